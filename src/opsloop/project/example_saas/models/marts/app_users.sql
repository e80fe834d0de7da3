{{ config(materialized='table') }}
-- The product's users as the app last reported them (signup, login or profile edit): the `app` system of
-- identity.yml. A phone edited in the app arrives as an app.user.updated event.
select
    app_user_id as id,
    arg_max(email, occurred_at) as email,
    arg_max(phone, occurred_at) filter (where phone is not null) as phone,
    max(occurred_at) filter (where name in ('app.user.updated', 'app.user.signed_up')) as profile_updated_at,
    max(occurred_at) as updated_at
from {{ ref('stg_app_events') }}
where app_user_id is not null
group by app_user_id
