//! Property tests of the `POST /users` body checks: the name length in
//! characters, the e-mail rules documented on `valid_email`, unknown fields,
//! and error messages that name the failing field.

use api_gateway::error::ApiError;
use api_gateway::users::{valid_email, CreateUser};
use axum::http::StatusCode;
use proptest::prelude::*;
use serde_json::{json, Value};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

const GOOD_NAME: &str = "Alice Smith";
const GOOD_EMAIL: &str = "alice@example.com";

fn user(name: &str, email: &str) -> CreateUser {
    CreateUser {
        name: name.to_owned(),
        email: email.to_owned(),
    }
}

/// Characters of every UTF-8 width, plus combining marks and zero-width
/// ones, which count as characters of their own.
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec!['a', 'Z', ' ', '-', '\'']),
        prop::sample::select(vec!['é', 'ß', 'Ω', 'Ж']),
        prop::sample::select(vec!['€', '中', '\u{0301}', '\u{200d}']),
        prop::sample::select(vec!['𝄞', '😀', '\u{1F3FD}']),
        any::<char>(),
    ]
}

/// `valid_email`'s rules spelled anew: at most 254 bytes, no whitespace or
/// control character, one `@`, a local part of 1 to 64 bytes, and at least
/// two dot-separated domain labels of letters, digits and inner hyphens.
fn email_rule(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && (1..=64).contains(&local.len())
        && domain.split('.').count() >= 2
        && domain.split('.').all(label_ok)
}

/// A domain label as the rules allow it (IDN letters included).
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9é中]([a-z0-9é中-]{0,10}[a-z0-9é中])?"
}

/// An address the rules accept, by construction.
fn good_email() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z0-9._%+!#$&'*/=?^`{|}~\"(),:;<>\\[\\]-]{1,20}",
        prop::collection::vec(label(), 2..5).prop_map(|labels| labels.join(".")),
    )
}

/// Characters that may appear anywhere in a hostile address.
fn email_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec!['a', 'z', '0', '.', '-', '@', '_', '+']),
        2 => prop::sample::select(vec![' ', '\t', '\n', '\u{0}', '\u{7f}', '\u{a0}', '\u{2028}', 'é']),
        1 => any::<char>(),
    ]
}

fn assert_names_field(err: &ApiError, field: &str) -> Result<(), TestCaseError> {
    prop_assert!(matches!(err, ApiError::Invalid(_)), "{err:?}");
    prop_assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    prop_assert!(
        err.to_string().starts_with(&format!("{field}:")),
        "{:?} does not name {}",
        err.to_string(),
        field
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// A name is valid at 5 to 100 characters, counted as Unicode scalar
    /// values whatever their byte width; the error names `name`.
    #[test]
    fn name_length_counts_characters(
        len in prop_oneof![
            prop::sample::select(vec![0usize, 4, 5, 100, 101]),
            0usize..=120,
        ],
        chars in prop::collection::vec(name_char(), 120),
    ) {
        let name: String = chars[..len].iter().collect();
        match user(&name, GOOD_EMAIL).validate() {
            Ok(()) => prop_assert!((5..=100).contains(&len), "{len} characters accepted"),
            Err(e) => {
                prop_assert!(!(5..=100).contains(&len), "{len} characters refused: {e}");
                assert_names_field(&e, "name")?;
            }
        }
    }

    /// Four-byte characters at the boundaries: 100 of them (400 bytes) pass,
    /// 101 do not, 5 pass, 4 do not.
    #[test]
    fn wide_characters_at_the_boundaries(c in prop::sample::select(vec!['a', 'é', '中', '😀'])) {
        for (len, ok) in [(4, false), (5, true), (100, true), (101, false)] {
            let name = c.to_string().repeat(len);
            prop_assert_eq!(user(&name, GOOD_EMAIL).validate().is_ok(), ok, "{} x {}", len, c);
        }
    }

    /// Addresses built to the rules are accepted, and validation passes.
    #[test]
    fn good_emails_are_accepted((local, domain) in good_email()) {
        let email = format!("{local}@{domain}");
        prop_assert!(valid_email(&email), "{:?} refused", email);
        prop_assert!(user(GOOD_NAME, &email).validate().is_ok());
    }

    /// Each single breach of a rule is refused, and the error names `email`.
    #[test]
    fn broken_emails_are_refused(
        (local, domain) in good_email(),
        breach in 0usize..11,
        space in prop::sample::select(vec![' ', '\t', '\n', '\r', '\u{0}', '\u{1b}', '\u{a0}', '\u{3000}']),
        bad in "[_!#$%&*+=/?^~'\"()<>,;:\\[\\]\\\\`{|}]",
    ) {
        let email = match breach {
            0 => format!("{local}{domain}"),                      // no @
            1 => format!("{local}@{local}@{domain}"),             // two @
            2 => format!("@{domain}"),                            // empty local part
            3 => format!("{local}@{}", domain.replace('.', "")),  // one label
            4 => format!("{local}@{domain}."),                    // empty last label
            5 => format!("{local}@.{domain}"),                    // empty first label
            6 => format!("{local}@-{domain}"),                    // label starts with '-'
            7 => format!("{local}@{}", domain.replacen('.', "-.", 1)), // label ends with '-'
            8 => format!("{local}@{domain}{bad}"),                // punctuation in a label
            9 => format!("{}@{domain}", "l".repeat(65)),          // local part over 64 bytes
            _ => {
                // whitespace or a control character anywhere
                let mut e = format!("{local}@{domain}");
                let at = e.len() / 2;
                let at = (0..=at).rev().find(|i| e.is_char_boundary(*i)).unwrap_or(0);
                e.insert(at, space);
                e
            }
        };
        prop_assert!(!valid_email(&email), "{:?} accepted", email);
        assert_names_field(&user(GOOD_NAME, &email).validate().unwrap_err(), "email")?;
    }

    /// The 254-byte limit is in bytes: an otherwise fine address is accepted
    /// exactly up to it, with multi-byte labels too.
    #[test]
    fn email_length_limit_is_in_bytes(n in 240usize..270, wide in any::<bool>()) {
        let fill = if wide { "é" } else { "e" };
        let mut domain = String::from("example.");
        while domain.len() + 1 + 2 < n {
            domain.push_str(fill);
        }
        while domain.len() + 1 + 2 < n {
            domain.push('e');
        }
        let email = format!("ab@{domain}");
        prop_assert_eq!(valid_email(&email), email.len() <= 254, "{} bytes", email.len());
    }

    /// Any string: no panic, and the answer is the documented rule's.
    #[test]
    fn valid_email_is_its_documented_rule(
        email in prop_oneof![
            any::<String>(),
            prop::collection::vec(email_char(), 0..40).prop_map(|c| c.into_iter().collect()),
            good_email().prop_map(|(l, d)| format!("{l}@{d}")),
        ],
        name in any::<String>(),
    ) {
        prop_assert_eq!(valid_email(&email), email_rule(&email), "{:?}", email);
        // Validation never panics either, and blames the name first.
        if let Err(e) = user(&name, &email).validate() {
            let name_ok = (5..=100).contains(&name.chars().count());
            assert_names_field(&e, if name_ok { "email" } else { "name" })?;
        }
    }

    /// The body has exactly two fields: any other one is refused by serde,
    /// as is a missing one or one of the wrong type.
    #[test]
    fn unknown_fields_are_refused(
        extra in "[a-zA-Z_]{1,10}",
        value in prop_oneof![Just(json!(null)), Just(json!(1)), Just(json!("x")), Just(json!({}))],
        drop in prop::sample::select(vec!["name", "email"]),
    ) {
        let parse = |v: &Value| serde_json::from_value::<CreateUser>(v.clone());
        let good = json!({"name": GOOD_NAME, "email": GOOD_EMAIL});
        prop_assert!(parse(&good).is_ok());
        let mut with_extra = good.clone();
        with_extra[&extra] = value.clone();
        let known = extra == "name" || extra == "email";
        // An extra field of a known name replaces it: fine only if still a string.
        prop_assert_eq!(parse(&with_extra).is_ok(), known && value.is_string(), "{}", with_extra);
        let mut missing = good.clone();
        missing.as_object_mut().expect("object").remove(drop);
        prop_assert!(parse(&missing).is_err());
        if !value.is_string() {
            let mut wrong_type = good;
            wrong_type[drop] = value;
            prop_assert!(parse(&wrong_type).is_err());
        }
    }
}
