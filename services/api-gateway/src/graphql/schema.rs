//! The GraphQL schema of SPEC §5 and its batched loaders.
//!
//! Each entity is loaded through an async-graphql [`DataLoader`]: the keys a
//! level of the query asks for are collected and fetched together (one
//! BatchGetItem for products, orders or customers; one PartiQL statement for
//! the items of up to 50 orders), all behind the read-through cache of
//! [`Store`]. Loaders are created per request so batches never mix callers.
//! A single entity already in the cache is answered at once, without waiting
//! for the loader's batching window.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    ComplexObject, Context, EmptyMutation, EmptySubscription, Object, Result, SimpleObject, ID,
};
use lambdaless_contracts::schema::ORDERS_BY_CUSTOMER;

use super::store::{n, s, Item, Store, StoreError};

pub type OrdersSchema = async_graphql::Schema<Query, EmptyMutation, EmptySubscription>;

/// Physical table names of one installation.
#[derive(Clone)]
pub struct Tables {
    pub customers: String,
    pub products: String,
    pub orders: String,
    pub order_items: String,
}

#[derive(SimpleObject, Clone)]
pub struct Product {
    product_id: ID,
    product_name: String,
    price: f64,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Customer {
    customer_id: ID,
    name: String,
    email: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Order {
    order_id: ID,
    order_ref: i32,
    #[graphql(skip)]
    customer_id: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct OrderItem {
    order_item_id: ID,
    quantity: i32,
    #[graphql(skip)]
    product_id: String,
    #[graphql(skip)]
    order_id: String,
}

fn product(item: &Item) -> Product {
    Product {
        product_id: ID(s(item, "productId")),
        product_name: s(item, "productName"),
        price: n(item, "price"),
    }
}

fn customer(item: &Item) -> Customer {
    Customer {
        customer_id: ID(s(item, "customerId")),
        name: s(item, "name"),
        email: s(item, "email"),
    }
}

fn order(item: &Item) -> Order {
    Order {
        order_id: ID(s(item, "orderId")),
        order_ref: n(item, "orderRef") as i32,
        customer_id: s(item, "customerId"),
    }
}

fn order_item(item: &Item) -> OrderItem {
    OrderItem {
        order_item_id: ID(s(item, "orderItemId")),
        quantity: n(item, "quantity") as i32,
        product_id: s(item, "productId"),
        order_id: s(item, "orderId"),
    }
}

/// What every loader shares.
#[derive(Clone)]
pub struct Source {
    pub store: Arc<Store>,
    pub tables: Tables,
}

pub struct ProductLoader(Source);
pub struct CustomerLoader(Source);
pub struct OrderLoader(Source);
/// Items of an order (`order_items` by hash key).
pub struct ItemsLoader(Source);
/// Orders of a customer (`orders` through the `by-customer` index).
pub struct CustomerOrdersLoader(Source);

impl Loader<String> for ProductLoader {
    type Value = Product;
    type Error = StoreError;
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Product>, StoreError> {
        let items = self
            .0
            .store
            .batch_get(&self.0.tables.products, "productId", keys)
            .await?;
        Ok(items.into_iter().map(|(k, v)| (k, product(&v))).collect())
    }
}

impl Loader<String> for CustomerLoader {
    type Value = Customer;
    type Error = StoreError;
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Customer>, StoreError> {
        let items = self
            .0
            .store
            .batch_get(&self.0.tables.customers, "customerId", keys)
            .await?;
        Ok(items.into_iter().map(|(k, v)| (k, customer(&v))).collect())
    }
}

impl Loader<String> for OrderLoader {
    type Value = Order;
    type Error = StoreError;
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Order>, StoreError> {
        let items = self
            .0
            .store
            .batch_get(&self.0.tables.orders, "orderId", keys)
            .await?;
        Ok(items.into_iter().map(|(k, v)| (k, order(&v))).collect())
    }
}

impl Loader<String> for ItemsLoader {
    type Value = Vec<OrderItem>;
    type Error = StoreError;
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Vec<OrderItem>>, StoreError> {
        let found = self
            .0
            .store
            .query_many(&self.0.tables.order_items, "orderId", keys)
            .await?;
        Ok(found
            .into_iter()
            .map(|(k, items)| {
                let mut list: Vec<OrderItem> = items.iter().map(order_item).collect();
                list.sort_by(|a, b| a.order_item_id.cmp(&b.order_item_id));
                (k, list)
            })
            .collect())
    }
}

impl Loader<String> for CustomerOrdersLoader {
    type Value = Vec<Order>;
    type Error = StoreError;
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Vec<Order>>, StoreError> {
        let queries = keys.iter().map(|k| async move {
            let items = self
                .0
                .store
                .query(
                    &self.0.tables.orders,
                    Some(ORDERS_BY_CUSTOMER),
                    "customerId",
                    k,
                )
                .await?;
            let mut list: Vec<Order> = items.iter().map(order).collect();
            list.sort_by(|a, b| a.order_id.cmp(&b.order_id));
            Ok::<_, StoreError>((k.clone(), list))
        });
        futures::future::try_join_all(queries)
            .await
            .map(|v| v.into_iter().collect())
    }
}

/// The loaders of one request.
pub struct Loaders {
    products: DataLoader<ProductLoader>,
    customers: DataLoader<CustomerLoader>,
    orders: DataLoader<OrderLoader>,
    items: DataLoader<ItemsLoader>,
    customer_orders: DataLoader<CustomerOrdersLoader>,
}

impl Loaders {
    pub fn new(source: &Source) -> Self {
        Self {
            products: DataLoader::new(ProductLoader(source.clone()), tokio::spawn),
            customers: DataLoader::new(CustomerLoader(source.clone()), tokio::spawn),
            orders: DataLoader::new(OrderLoader(source.clone()), tokio::spawn),
            items: DataLoader::new(ItemsLoader(source.clone()), tokio::spawn),
            customer_orders: DataLoader::new(CustomerOrdersLoader(source.clone()), tokio::spawn),
        }
    }
}

impl Loaders {
    async fn product(&self, id: String) -> Result<Option<Product>, StoreError> {
        let src = &self.products.loader().0;
        match src.store.cached_item(&src.tables.products, &id) {
            Some(hit) => Ok(hit.as_ref().map(product)),
            None => self.products.load_one(id).await,
        }
    }

    async fn customer(&self, id: String) -> Result<Option<Customer>, StoreError> {
        let src = &self.customers.loader().0;
        match src.store.cached_item(&src.tables.customers, &id) {
            Some(hit) => Ok(hit.as_ref().map(customer)),
            None => self.customers.load_one(id).await,
        }
    }

    async fn order(&self, id: String) -> Result<Option<Order>, StoreError> {
        let src = &self.orders.loader().0;
        match src.store.cached_item(&src.tables.orders, &id) {
            Some(hit) => Ok(hit.as_ref().map(order)),
            None => self.orders.load_one(id).await,
        }
    }
}

/// The most items one list field returns. A longer list is refused with an error naming it
/// (the cost model counts a list as [`super::LIST_FACTOR`] items; this bounds the answer even
/// for the one customer with thousands of orders).
pub const MAX_LIST_ITEMS: usize = 1000;

fn capped<T>(list: Vec<T>, what: &str, id: &str) -> Result<Vec<T>> {
    if list.len() > MAX_LIST_ITEMS {
        return Err(format!(
            "the {what} {id} are {} items; a list field returns at most {MAX_LIST_ITEMS}",
            list.len()
        )
        .into());
    }
    Ok(list)
}

fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
    ctx.data_unchecked::<Loaders>()
}

pub struct Query;

#[Object]
impl Query {
    async fn product(&self, ctx: &Context<'_>, product_id: ID) -> Result<Option<Product>> {
        Ok(loaders(ctx).product(product_id.0).await?)
    }

    #[graphql(complexity = "1 + super::LIST_FACTOR * child_complexity")]
    async fn order_items(&self, ctx: &Context<'_>, order_id: ID) -> Result<Vec<OrderItem>> {
        let items = loaders(ctx).items.load_one(order_id.0.clone()).await?;
        capped(items.unwrap_or_default(), "items of order", &order_id.0)
    }

    #[graphql(complexity = "1 + super::LIST_FACTOR * child_complexity")]
    async fn orders(&self, ctx: &Context<'_>, customer_id: ID) -> Result<Vec<Order>> {
        let orders = loaders(ctx)
            .customer_orders
            .load_one(customer_id.0.clone())
            .await?;
        capped(
            orders.unwrap_or_default(),
            "orders of customer",
            &customer_id.0,
        )
    }

    async fn order(&self, ctx: &Context<'_>, order_id: ID) -> Result<Option<Order>> {
        Ok(loaders(ctx).order(order_id.0).await?)
    }

    async fn customer(&self, ctx: &Context<'_>, customer_id: ID) -> Result<Option<Customer>> {
        Ok(loaders(ctx).customer(customer_id.0).await?)
    }
}

#[ComplexObject]
impl Customer {
    #[graphql(complexity = "1 + super::LIST_FACTOR * child_complexity")]
    async fn orders(&self, ctx: &Context<'_>) -> Result<Vec<Order>> {
        let orders = loaders(ctx)
            .customer_orders
            .load_one(self.customer_id.0.clone())
            .await?;
        capped(
            orders.unwrap_or_default(),
            "orders of customer",
            &self.customer_id.0,
        )
    }
}

#[ComplexObject]
impl Order {
    async fn customer(&self, ctx: &Context<'_>) -> Result<Customer> {
        loaders(ctx)
            .customer(self.customer_id.clone())
            .await?
            .ok_or_else(|| {
                format!(
                    "customer {} of order {} not found",
                    self.customer_id, self.order_id.0
                )
                .into()
            })
    }

    #[graphql(complexity = "1 + super::LIST_FACTOR * child_complexity")]
    async fn items(&self, ctx: &Context<'_>) -> Result<Vec<OrderItem>> {
        let items = loaders(ctx).items.load_one(self.order_id.0.clone()).await?;
        capped(
            items.unwrap_or_default(),
            "items of order",
            &self.order_id.0,
        )
    }

    /// Sum of quantity × price over the order's items.
    async fn total(&self, ctx: &Context<'_>) -> Result<f64> {
        let l = loaders(ctx);
        let items = l
            .items
            .load_one(self.order_id.0.clone())
            .await?
            .unwrap_or_default();
        let products = l
            .products
            .load_many(items.iter().map(|i| i.product_id.clone()))
            .await?;
        let cents: i64 = items
            .iter()
            .map(|i| {
                let price = products.get(&i.product_id).map(|p| p.price).unwrap_or(0.0);
                i64::from(i.quantity) * (price * 100.0).round() as i64
            })
            .sum();
        Ok(cents as f64 / 100.0)
    }
}

#[ComplexObject]
impl OrderItem {
    async fn product(&self, ctx: &Context<'_>) -> Result<Product> {
        loaders(ctx)
            .product(self.product_id.clone())
            .await?
            .ok_or_else(|| format!("product {} not found", self.product_id).into())
    }

    async fn order(&self, ctx: &Context<'_>) -> Result<Order> {
        loaders(ctx)
            .order(self.order_id.clone())
            .await?
            .ok_or_else(|| format!("order {} not found", self.order_id).into())
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn lists_longer_than_the_cap_are_refused_with_their_name() {
        let ok = capped(vec![1; MAX_LIST_ITEMS], "orders of customer", "c1").unwrap();
        assert_eq!(ok.len(), MAX_LIST_ITEMS);
        let err = capped(vec![1; MAX_LIST_ITEMS + 1], "orders of customer", "c1").unwrap_err();
        assert!(
            err.message.contains("orders of customer c1 are 1001 items"),
            "{}",
            err.message
        );
    }
}
