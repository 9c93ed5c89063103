//! Table key schemas of SPEC §2 as data, so `provision`, the services and the
//! tests agree on them without restating them.

use crate::names;

/// The DynamoDB scalar types used in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    S,
    N,
}

/// One key attribute (hash or range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttr {
    pub name: &'static str,
    pub kind: KeyType,
}

/// A global secondary index (projection: all attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gsi {
    pub name: &'static str,
    pub hash: KeyAttr,
}

/// A table's logical name, primary key and indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub name: &'static str,
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
    pub gsis: &'static [Gsi],
}

const fn s(name: &'static str) -> KeyAttr {
    KeyAttr {
        name,
        kind: KeyType::S,
    }
}

/// GSI on `users.sqsMessageId`, answering `GET /status/{messageId}`.
pub const USERS_BY_SQS_MESSAGE_ID: &str = "by-sqs-message-id";
/// GSI on `orders.customerId`, answering `orders(customerId)`.
pub const ORDERS_BY_CUSTOMER: &str = "by-customer";

/// Every table lambdaless uses.
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: names::DEVICE_MESSAGES,
        hash: s("uuid"),
        range: Some(s("messageId")),
        gsis: &[],
    },
    TableSpec {
        name: names::USERS,
        hash: s("userId"),
        range: None,
        gsis: &[Gsi {
            name: USERS_BY_SQS_MESSAGE_ID,
            hash: s("sqsMessageId"),
        }],
    },
    TableSpec {
        name: names::CUSTOMERS,
        hash: s("customerId"),
        range: None,
        gsis: &[],
    },
    TableSpec {
        name: names::PRODUCTS,
        hash: s("productId"),
        range: None,
        gsis: &[],
    },
    TableSpec {
        name: names::ORDERS,
        hash: s("orderId"),
        range: None,
        gsis: &[Gsi {
            name: ORDERS_BY_CUSTOMER,
            hash: s("customerId"),
        }],
    },
    TableSpec {
        name: names::ORDER_ITEMS,
        hash: s("orderId"),
        range: Some(s("orderItemId")),
        gsis: &[],
    },
    TableSpec {
        name: names::DOCUMENTS,
        hash: s("id"),
        range: None,
        gsis: &[],
    },
    TableSpec {
        name: names::ARTISTS,
        hash: s("id"),
        range: None,
        gsis: &[],
    },
];

/// Looks a table up by logical name.
pub fn table(name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_the_spec_is_described_once() {
        let mut names: Vec<_> = TABLES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 8);
        assert_eq!(table("users").unwrap().gsis[0].hash.name, "sqsMessageId");
        assert!(table("nope").is_none());
    }
}
