-- Logins and profile edits from the product.
select
    event_id,
    name,
    json_extract_string(payload, '$.user.id') as app_user_id,
    lower(trim(json_extract_string(payload, '$.user.email'))) as email,
    json_extract_string(payload, '$.user.phone') as phone,
    coalesce(try_cast(json_extract_string(payload, '$.occurred_at') as timestamptz), received_at) as occurred_at
from {{ source('raw', 'events') }}
where name in ('app.user.login', 'app.user.updated', 'app.user.signed_up')
