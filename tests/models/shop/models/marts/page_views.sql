{{ config(materialized='view', tags=['events']) }}
select page, count(*) as views, count(distinct customer_id) as visitors
from {{ ref('events_log') }}
where event_name = 'page.viewed'
group by page
