with items as (
    select * from {{ ref('int_order_items') }}
)
select
    order_id,
    customer_id,
    order_date,
    status,
    category,
    amount,
    {{ to_cents('amount') }} as amount_cents
from items
where status != 'returned'
