{{ config(materialized='incremental', unique_key='customer_id', incremental_strategy='merge') }}
select
    customer_id,
    max(seq) as max_seq,
    count(*) as batch_events,
    max(received_at) as last_seen
from {{ ref('stg_events') }}
{% if is_incremental() %}
where seq > (select max(max_seq) from {{ this }})
{% endif %}
group by customer_id
