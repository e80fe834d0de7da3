select
    d.country,
    cc.country_name,
    sum(d.lifetime_value) as revenue,
    count(*) as customers
from {{ ref('dim_customers') }} d
left join {{ ref('country_codes') }} cc on d.country = cc.code
group by d.country, cc.country_name
