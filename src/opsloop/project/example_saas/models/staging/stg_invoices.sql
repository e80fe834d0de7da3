-- Paid invoices: this month's sales.
select
    event_id,
    json_extract_string(payload, '$.data.object.id') as invoice_id,
    json_extract_string(payload, '$.data.object.customer') as stripe_customer_id,
    lower(trim(json_extract_string(payload, '$.data.object.customer_email'))) as email,
    cast(json_extract_string(payload, '$.data.object.amount_paid') as bigint) / 100.0 as amount,
    coalesce(to_timestamp(try_cast(json_extract_string(payload, '$.created') as bigint)), received_at) as paid_at
from {{ source('raw', 'events') }}
where name = 'stripe.invoice.paid'
