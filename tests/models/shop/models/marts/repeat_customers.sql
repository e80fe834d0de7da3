select customer_id, customer_name, order_count
from {{ ref('dim_customers') }}
where order_count > {{ var('min_orders') }}
