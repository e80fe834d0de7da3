{{ config(materialized='incremental') }}
select event_id, seq, event_name, customer_id, page
from {{ ref('stg_events') }}
{% if is_incremental() %}
where seq > (select coalesce(max(seq), 0) from {{ this }})
{% endif %}
