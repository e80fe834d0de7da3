-- Subscription lifecycle from Stripe: created (a purchase) and deleted (a churn).
select
    event_id,
    json_extract_string(payload, '$.data.object.id') as subscription_id,
    json_extract_string(payload, '$.data.object.customer') as stripe_customer_id,
    lower(trim(json_extract_string(payload, '$.data.object.metadata.email'))) as email,
    json_extract_string(payload, '$.data.object.metadata.company') as company,
    case name
        when 'stripe.customer.subscription.created' then 'created'
        when 'stripe.customer.subscription.deleted' then 'deleted'
    end as change,
    coalesce(to_timestamp(try_cast(json_extract_string(payload, '$.created') as bigint)), received_at) as occurred_at
from {{ source('raw', 'events') }}
where name in ('stripe.customer.subscription.created', 'stripe.customer.subscription.deleted')
