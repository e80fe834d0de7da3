{{ config(materialized='incremental', unique_key='order_date', incremental_strategy='delete+insert') }}
select order_date, count(*) as orders, sum(quantity) as items
from {{ ref('stg_orders') }}
group by order_date
