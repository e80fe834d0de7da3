{{ config(materialized='table') }}
-- The product's users as the app last reported them (signup, login or profile edit): the `app` system of
-- identity.yml. A phone edited in the app arrives as an app.user.updated event. Written in SQL every
-- warehouse runs (window functions, no arg_max), so the example builds the same rows on each.
with events as (
    select * from {{ ref('stg_app_events') }} where app_user_id is not null
),
latest as (
    select app_user_id, email,
           row_number() over (partition by app_user_id order by occurred_at desc, event_id desc) as n
    from events
),
latest_phone as (
    select app_user_id, phone,
           row_number() over (partition by app_user_id order by occurred_at desc, event_id desc) as n
    from events
    where phone is not null
),
times as (
    select
        app_user_id,
        max(case when name in ('app.user.updated', 'app.user.signed_up') then occurred_at end) as profile_updated_at,
        max(occurred_at) as updated_at
    from events
    group by app_user_id
)
select
    t.app_user_id as id,
    l.email,
    p.phone,
    t.profile_updated_at,
    t.updated_at
from times as t
join latest as l on l.app_user_id = t.app_user_id and l.n = 1
left join latest_phone as p on p.app_user_id = t.app_user_id and p.n = 1
