select id as product_id, name as product_name, category, price
from {{ ref('products') }}
