{{ config(materialized='view') }}
select category, count(*) as orders, sum(amount) as revenue
from {{ ref('int_order_items') }}
group by category
