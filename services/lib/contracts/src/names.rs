//! Queue and table names of SPEC §2, with the optional prefix that lets
//! several lambdaless installations share one AWS account.

/// Seed 2 inbound device messages (SQS → DynamoDB).
pub const DEVICE_INBOUND: &str = "device-inbound";
/// Seed 2 `send` operation target.
pub const DEVICE_OUTBOUND: &str = "device-outbound";
/// Seed 4 asynchronous user creation.
pub const USERS_CREATE: &str = "users-create";
/// Seed 1 fetch requests (the seed's "invoke the Lambda").
pub const FETCH_REQUESTS: &str = "fetch-requests";
/// Per-user reply queues of seed 1 are `user-queue-{userId}`.
pub const USER_QUEUE_PREFIX: &str = "user-queue-";
/// Every queue has a dead-letter queue named `<queue>-dlq`.
pub const DLQ_SUFFIX: &str = "-dlq";
/// Redrive policy: a message received this many times moves to the DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// The standard queues `provision` creates (each with its DLQ).
pub const QUEUES: [&str; 4] = [
    DEVICE_INBOUND,
    DEVICE_OUTBOUND,
    USERS_CREATE,
    FETCH_REQUESTS,
];

pub const DEVICE_MESSAGES: &str = "device-messages";
pub const USERS: &str = "users";
pub const CUSTOMERS: &str = "customers";
pub const PRODUCTS: &str = "products";
pub const ORDERS: &str = "orders";
pub const ORDER_ITEMS: &str = "order_items";
pub const DOCUMENTS: &str = "documents";
pub const ARTISTS: &str = "artists";

/// Resolves logical names to the physical names of one installation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Prepended verbatim to every queue and table name; empty in Compose.
    prefix: String,
}

/// A prefix that AWS would reject in a queue or table name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "name prefix {0:?} may only contain ASCII letters, digits, '-' and '_' (at most 40 characters)"
)]
pub struct InvalidPrefix(pub String);

impl Names {
    /// Accepts only characters valid in both SQS queue and DynamoDB table names.
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        let ok = prefix.len() <= 40
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self { prefix })
        } else {
            Err(InvalidPrefix(prefix))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Physical name of a queue or table.
    pub fn name(&self, logical: &str) -> String {
        format!("{}{}", self.prefix, logical)
    }

    /// Physical name of the dead-letter queue of `logical`.
    pub fn dlq(&self, logical: &str) -> String {
        format!("{}{}{}", self.prefix, logical, DLQ_SUFFIX)
    }

    /// Physical name of a user's reply queue.
    pub fn user_queue(&self, user_id: &str) -> String {
        format!("{}{}{}", self.prefix, USER_QUEUE_PREFIX, user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_applies_to_queues_dlqs_and_user_queues() {
        let n = Names::new("t1-").unwrap();
        assert_eq!(n.name(DEVICE_INBOUND), "t1-device-inbound");
        assert_eq!(n.dlq(DEVICE_INBOUND), "t1-device-inbound-dlq");
        assert_eq!(n.user_queue("abc"), "t1-user-queue-abc");
        assert_eq!(Names::default().name(USERS), "users");
    }

    #[test]
    fn hostile_prefixes_are_refused() {
        for bad in ["a/b", "x y", "../", "é", &"p".repeat(41)] {
            assert!(Names::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
