{{ config(materialized='table') }}
-- One row per paying customer: when they became one, and whether they churned.
with changes as (
    select
        email,
        min(company) as company,
        min(stripe_customer_id) as stripe_customer_id,
        min(case when change = 'created' then occurred_at end) as became_customer_at,
        max(case when change = 'deleted' then occurred_at end) as churned_at,
        max(case when change = 'created' then occurred_at end) as last_created_at
    from {{ ref('stg_subscriptions') }}
    group by email
)
select
    email,
    company,
    stripe_customer_id,
    became_customer_at,
    case when churned_at is not null and churned_at >= last_created_at then churned_at end as churned_at,
    case when churned_at is not null and churned_at >= last_created_at then 'churned' else 'active' end as status
from changes
where became_customer_at is not null
