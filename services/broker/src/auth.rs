//! Who may connect: the configured users, checked in constant time.
//!
//! The front end asks [`Users::check`] for every CONNECT and answers a refusal
//! with CONNACK 5 ("not authorized", as mosquitto does for every login
//! failure). rumqttd's own listeners are not started, so there is no
//! other way in.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::acl::Role;
use crate::settings::Account;

/// Why a login was refused; also the `reason` label of `broker_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    NoCredentials,
    UnknownUser,
    BadPassword,
}

impl AuthFailure {
    /// Every reason, so the metric shows all of them from the start.
    pub(crate) const ALL: [Self; 3] = [Self::NoCredentials, Self::UnknownUser, Self::BadPassword];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::NoCredentials => "no_credentials",
            Self::UnknownUser => "unknown_user",
            Self::BadPassword => "bad_password",
        }
    }
}

/// The configured users and the anonymous-access switch.
#[derive(Clone)]
pub(crate) struct Users {
    users: Arc<BTreeMap<String, Account>>,
    allow_anonymous: bool,
}

impl Users {
    pub(crate) fn new(users: BTreeMap<String, Account>, allow_anonymous: bool) -> Self {
        Self {
            users: Arc::new(users),
            allow_anonymous,
        }
    }

    pub(crate) fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// A client without a user name passes only with `allow_anonymous`; one
    /// with a user name must match a configured user, unless no user is
    /// configured at all (anonymous mode accepts any login then). Anonymous
    /// clients get the default role, `device`.
    pub(crate) fn check(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Role, AuthFailure> {
        let Some(username) = username else {
            return if self.allow_anonymous {
                Ok(Role::default())
            } else {
                Err(AuthFailure::NoCredentials)
            };
        };
        if self.users.is_empty() && self.allow_anonymous {
            return Ok(Role::default());
        }
        let Some(expected) = self.users.get(username) else {
            return Err(AuthFailure::UnknownUser);
        };
        if constant_time_eq(
            expected.password.expose_secret().as_bytes(),
            password.unwrap_or_default(),
        ) {
            Ok(expected.role)
        } else {
            Err(AuthFailure::BadPassword)
        }
    }
}

/// Compares without an early exit, so timing reveals at most the length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(anonymous: bool) -> Users {
        let mut map = BTreeMap::new();
        map.insert("local".to_owned(), Account::new("local"));
        map.insert("worker".to_owned(), Account::with_role("w", Role::Service));
        Users::new(map, anonymous)
    }

    #[test]
    fn a_configured_user_with_the_right_password_passes() {
        assert_eq!(
            users(false).check(Some("local"), Some(b"local")),
            Ok(Role::Device)
        );
        assert_eq!(
            users(false).check(Some("worker"), Some(b"w")),
            Ok(Role::Service)
        );
    }

    #[test]
    fn wrong_password_unknown_user_and_missing_login_are_refused() {
        let u = users(false);
        assert_eq!(
            u.check(Some("local"), Some(b"nope")),
            Err(AuthFailure::BadPassword)
        );
        assert_eq!(u.check(Some("local"), None), Err(AuthFailure::BadPassword));
        assert_eq!(
            u.check(Some("mallory"), Some(b"local")),
            Err(AuthFailure::UnknownUser)
        );
        assert_eq!(u.check(None, None), Err(AuthFailure::NoCredentials));
    }

    #[test]
    fn anonymous_mode_admits_clients_without_login_but_still_checks_logins() {
        let u = users(true);
        assert_eq!(u.check(None, None), Ok(Role::Device));
        assert_eq!(
            u.check(Some("local"), Some(b"nope")),
            Err(AuthFailure::BadPassword)
        );
        let open = Users::new(BTreeMap::new(), true);
        assert_eq!(open.check(Some("anyone"), Some(b"x")), Ok(Role::Device));
    }
}
