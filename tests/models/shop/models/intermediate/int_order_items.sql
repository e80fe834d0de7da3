{{ config(materialized='ephemeral') }}
select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.status,
    p.category,
    o.quantity * p.price as amount
from {{ ref('stg_orders') }} o
join {{ ref('stg_products') }} p on o.product_id = p.product_id
