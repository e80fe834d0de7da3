{{ config(materialized='table') }}
-- How long each buyer took from their first demo request to buying, and where that stands among buyers
-- (percentile 0 = the fastest buyer, 100 = the slowest).
with first_request as (
    select email, arg_min(name, requested_at) as name, min(requested_at) as requested_at
    from {{ ref('demo_requests') }}
    group by email
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
)
select
    *,
    round(100 * percent_rank() over (order by hours_to_buy), 1) as percentile_among_buyers,
    median(hours_to_buy) over () as median_hours_to_buy
from buyers
