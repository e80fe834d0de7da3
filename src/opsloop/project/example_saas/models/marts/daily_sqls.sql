{{ config(materialized='table') }}
-- Sales-qualified leads per day.
select requested_on as day, count(*) filter (where is_sql) as sqls, count(*) as demo_requests
from {{ ref('demo_requests') }}
group by 1
