{{ config(tags=['orders']) }}
select
    id as order_id,
    customer_id,
    product_id,
    quantity,
    status,
    ordered_at,
    cast(ordered_at as date) as order_date
from {{ ref('shop', 'orders') }}
