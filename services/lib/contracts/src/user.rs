//! Seed 4 users: the user id is a pure function of the SQS MessageId of the
//! `users-create` message, so a redelivered message maps to the same user and
//! `api-gateway` can answer `GET /status/{messageId}` with one key lookup.

use uuid::Uuid;

/// Namespace of the UUIDv5 user ids (fixed forever: changing it orphans users).
pub const USER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c61_6d62_6461_6c65_7373_7573_6572_7331);

/// `userId` for the user created by the `users-create` message `sqs_message_id`.
pub fn user_id(sqs_message_id: &str) -> String {
    Uuid::new_v5(&USER_ID_NAMESPACE, sqs_message_id.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_message_same_user() {
        let a = user_id("0d4f5c1e-1111-2222-3333-444455556666");
        assert_eq!(a, user_id("0d4f5c1e-1111-2222-3333-444455556666"));
        assert_ne!(a, user_id("0d4f5c1e-1111-2222-3333-444455556667"));
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
    }
}
