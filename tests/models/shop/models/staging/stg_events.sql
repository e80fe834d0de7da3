select
    event_id,
    seq,
    name as event_name,
    received_at,
    cast(json_extract_string(payload, '$.customer_id') as integer) as customer_id,
    json_extract_string(payload, '$.page') as page
from {{ source('raw', 'events') }}
