{{ config(materialized='table') }}
-- How long each buyer took from their first demo request to buying, and where that stands among buyers
-- (percentile 0 = the fastest buyer, 100 = the slowest).
with requests as (
    select email, name, requested_at,
           row_number() over (partition by email order by requested_at, demo_request_id) as n
    from {{ ref('demo_requests') }}
),
first_request as (
    select email, name, requested_at from requests where n = 1
),
buyers as (
    select
        c.email,
        f.name,
        c.company,
        f.requested_at,
        c.became_customer_at as purchased_at,
        -- exact to the microsecond: date_diff('second', ...) counts whole-second boundaries
        extract(epoch from (c.became_customer_at - f.requested_at)) / 3600.0 as hours_to_buy
    from {{ ref('customers') }} as c
    join first_request as f on f.email = c.email
    where c.became_customer_at >= f.requested_at
),
overall as (
    select median(hours_to_buy) as median_hours_to_buy from buyers
)
select
    b.*,
    round(100 * percent_rank() over (order by b.hours_to_buy), 1) as percentile_among_buyers,
    o.median_hours_to_buy
from buyers as b
cross join overall as o
