select
    c.customer_id,
    c.customer_name,
    c.country,
    c.is_active,
    count(f.order_id) as order_count,
    coalesce(sum(f.amount), 0) as lifetime_value,
    case when coalesce(sum(f.amount), 0) >= {{ var('vip_threshold') }} then 'vip' else 'regular' end as tier
from {{ ref('stg_customers') }} c
left join {{ ref('fct_orders') }} f on c.customer_id = f.customer_id
group by c.customer_id, c.customer_name, c.country, c.is_active
