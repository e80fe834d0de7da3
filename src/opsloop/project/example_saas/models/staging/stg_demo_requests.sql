-- One row per demo request from the website form (requested_at: the form's time when sent, else arrival).
select
    event_id as demo_request_id,
    lower(trim(json_extract_string(payload, '$.email'))) as email,
    json_extract_string(payload, '$.name') as name,
    json_extract_string(payload, '$.company') as company,
    coalesce(try_cast(json_extract_string(payload, '$.requested_at') as timestamptz), received_at) as requested_at
from {{ source('raw', 'events') }}
where name = 'demo_request.created'
