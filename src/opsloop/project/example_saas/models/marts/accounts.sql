{{ config(materialized='table') }}
-- The account model: the company's name and canonical id, logins in the last 48 hours, status.
with people as (
    select email, company from {{ ref('stg_demo_requests') }}
    union
    select email, company from {{ ref('customers') }}
),
companies as (
    select
        lower(trim(company)) as company_key,
        min(company) as company_name
    from people
    where company is not null and company <> ''
    group by 1
),
logins as (
    select p.company as company, count(*) as logins_48h
    from {{ ref('stg_app_events') }} as e
    join people as p on p.email = e.email
    where e.name = 'app.user.login' and e.occurred_at >= now() - interval 48 hour
    group by 1
),
status as (
    select lower(trim(company)) as company_key,
           max(case when status = 'active' then 2 when status = 'churned' then 1 else 0 end) as rank
    from {{ ref('customers') }}
    group by 1
)
select
    'acc_' || substr(md5(c.company_key), 1, 12) as account_id,
    c.company_name as name,
    coalesce(l.logins_48h, 0) as logins_48h,
    case s.rank when 2 then 'customer' when 1 then 'churned' else 'prospect' end as status
from companies as c
left join logins as l on lower(trim(l.company)) = c.company_key
left join status as s on s.company_key = c.company_key
