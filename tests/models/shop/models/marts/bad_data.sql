{{ config(materialized='table', tags=['failing']) }}
select 1 as id, 'placed' as status, 1 as customer_id union all
select 1, 'lost', 99 union all
select cast(null as integer), 'placed', 2
