//! Seed 4 users: the user id is a pure function of the SQS MessageId of the
//! `users-create` message, so a redelivered message maps to the same user and
//! `api-gateway` can answer `GET /status/{messageId}` with one key lookup.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of the UUIDv5 user ids (fixed forever: changing it orphans users).
pub const USER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c61_6d62_6461_6c65_7373_7573_6572_7331);

/// `userId` for the user created by the `users-create` message `sqs_message_id`.
pub fn user_id(sqs_message_id: &str) -> String {
    Uuid::new_v5(&USER_ID_NAMESPACE, sqs_message_id.as_bytes()).to_string()
}

/// Body of `POST /users` and of every `users-create` message (SPEC §4). `api-gateway`
/// validates it before queueing and `mover` again before storing, since anyone with
/// access to the queue may write to it; both call [`NewUser::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub email: String,
}

/// Why a users-create body is refused; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("name: must be 5 to 100 characters (got {0})")]
    NameLength(usize),
    #[error("email: must be a valid e-mail address")]
    Email,
}

impl NewUser {
    /// The rules of SPEC §4.
    pub fn validate(&self) -> Result<(), UserError> {
        let len = self.name.chars().count();
        if !(5..=100).contains(&len) {
            return Err(UserError::NameLength(len));
        }
        if !valid_email(&self.email) {
            return Err(UserError::Email);
        }
        Ok(())
    }
}

/// A pragmatic address check: one `@`, a non-empty local part of at most 64 bytes, a dotted
/// domain of letters, digits and hyphens (no label starting or ending with `-`), no
/// whitespace or control characters, at most 254 bytes in all.
pub fn valid_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_rules_for_gateway_and_mover() {
        let user = |name: &str, email: &str| NewUser {
            name: name.into(),
            email: email.into(),
        };
        assert!(user("Alice Smith", "alice@example.com").validate().is_ok());
        assert_eq!(
            user("Al", "a@b.co").validate(),
            Err(UserError::NameLength(2))
        );
        assert_eq!(
            user("Alice Smith", "nope").validate(),
            Err(UserError::Email)
        );
        // What `contains('@')` used to let through in mover.
        assert_eq!(user("Alice Smith", "a@b").validate(), Err(UserError::Email));
        assert_eq!(
            user("Alice Smith", "@b.co").validate(),
            Err(UserError::Email)
        );
    }

    #[test]
    fn same_message_same_user() {
        let a = user_id("0d4f5c1e-1111-2222-3333-444455556666");
        assert_eq!(a, user_id("0d4f5c1e-1111-2222-3333-444455556666"));
        assert_ne!(a, user_id("0d4f5c1e-1111-2222-3333-444455556667"));
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
    }
}
