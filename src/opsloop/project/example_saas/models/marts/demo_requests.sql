{{ config(materialized='table') }}
-- Demo requests with what became of them. Sales-qualified: a company was given and the address is
-- not a free mail domain.
select
    d.demo_request_id,
    d.email,
    d.name,
    d.company,
    d.requested_at,
    cast(d.requested_at as date) as requested_on,
    (d.company is not null and d.company <> ''
        and split_part(d.email, '@', 2) not in ('gmail.com', 'yahoo.com', 'hotmail.com', 'outlook.com')) as is_sql,
    c.became_customer_at as purchased_at
from {{ ref('stg_demo_requests') }} as d
left join {{ ref('customers') }} as c on c.email = d.email
