//! HS256 JSON Web Tokens (RFC 7519 with a JWS compact signature, RFC 7515):
//! verification for the authorizer and signing for clients and tests.
//!
//! Only HS256 is spoken, so the check is small enough to own: the header
//! must name `"alg":"HS256"` (anything else, `none` included, is refused
//! before the signature is looked at), the signature is compared in constant
//! time by `hmac`, and the time and identity claims are checked by the
//! [`Rules`]. This replaced a general JWT crate whose RSA and elliptic-curve
//! code (never used here) was 4% of a cold build (docs/build-costs.md).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused (for logs; callers answer 401 whatever the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not three base64url parts with a JSON header and claims")]
    Malformed,
    #[error("the header does not name HS256")]
    Algorithm,
    #[error("the signature does not match")]
    Signature,
    #[error("claim `{0}` is required")]
    Missing(&'static str),
    #[error("claim `{0}` has the wrong type")]
    Type(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the issuer is not the expected one")]
    Issuer,
    #[error("the audience does not include the expected one")]
    Audience,
}

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// When set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` (a string or a list) is required and must contain it.
    pub audience: Option<String>,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length")
}

fn json_part(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

fn seconds(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(JwtError::Type(name)),
        Some(_) => Err(JwtError::Type(name)),
    }
}

/// Checks `token` against `secret` and `rules` at time `now` (seconds since
/// the epoch) and returns its claims.
pub fn verify(
    token: &str,
    secret: &[u8],
    rules: &Rules,
    now: u64,
) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let head = json_part(header)?;
    if head.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed)?;
    let mut check = mac(secret);
    check.update(header.as_bytes());
    check.update(b".");
    check.update(payload.as_bytes());
    check
        .verify_slice(&signature)
        .map_err(|_| JwtError::Signature)?;

    let claims = json_part(payload)?;
    let now = now as f64;
    let leeway = rules.leeway_secs as f64;
    let exp = seconds(&claims, "exp")?.ok_or(JwtError::Missing("exp"))?;
    if exp < now - leeway {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = seconds(&claims, "nbf")? {
        if nbf > now + leeway {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(want) = &rules.issuer {
        match claims.get("iss") {
            None => return Err(JwtError::Missing("iss")),
            Some(Value::String(iss)) if iss == want => {}
            Some(Value::String(_)) => return Err(JwtError::Issuer),
            Some(_) => return Err(JwtError::Type("iss")),
        }
    }
    if let Some(want) = &rules.audience {
        let found = match claims.get("aud") {
            None => return Err(JwtError::Missing("aud")),
            Some(Value::String(aud)) => aud == want,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want)),
            Some(_) => return Err(JwtError::Type("aud")),
        };
        if !found {
            return Err(JwtError::Audience);
        }
    }
    Ok(claims)
}

/// Signs `claims` (a JSON object) as an HS256 token.
pub fn sign(claims: &Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut m = mac(secret);
    m.update(header.as_bytes());
    m.update(b".");
    m.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{header}.{payload}.{signature}")
}

/// Seconds since the epoch, for [`verify`]'s `now`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"secret";
    const NOW: u64 = 1_800_000_000;

    fn rules() -> Rules {
        Rules {
            leeway_secs: 30,
            ..Rules::default()
        }
    }

    #[test]
    fn a_token_it_signs_verifies_and_returns_its_claims() {
        let t = sign(&json!({"sub": "ann", "exp": NOW + 60}), KEY);
        let claims = verify(&t, KEY, &rules(), NOW).unwrap();
        assert_eq!(claims["sub"], "ann");
    }

    #[test]
    fn a_token_made_by_another_implementation_verifies() {
        // {"alg":"HS256","typ":"JWT"}.{"sub":"1234567890","exp":4102444800} signed with
        // the key "secret" by `openssl dgst -sha256 -hmac secret` and base64url by hand.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                     eyJzdWIiOiIxMjM0NTY3ODkwIiwiZXhwIjo0MTAyNDQ0ODAwfQ.\
                     B87ky_xnfSw6IuujR-udaBU_p6EHZ2WcNiTbiFXAmHg";
        let claims = verify(token, KEY, &rules(), NOW).unwrap();
        assert_eq!(claims["sub"], "1234567890");
        // Ours writes the same header.
        let ours = sign(&json!({"sub": "1234567890", "exp": 4102444800u64}), KEY);
        assert_eq!(ours.split('.').next(), token.split('.').next());
    }

    #[test]
    fn wrong_key_tampered_claims_and_other_algorithms_are_refused() {
        let t = sign(&json!({"sub": "ann", "exp": NOW + 60}), KEY);
        assert_eq!(
            verify(&t, b"other", &rules(), NOW),
            Err(JwtError::Signature)
        );
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"root","exp":4102444800}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), KEY, &rules(), NOW),
            Err(JwtError::Signature)
        );
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":4102444800}"#);
        assert_eq!(
            verify(&format!("{none}.{payload}."), KEY, &rules(), NOW),
            Err(JwtError::Algorithm)
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(verify(bad, KEY, &rules(), NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_claims_are_checked_with_the_leeway() {
        let at = |claims: Value| verify(&sign(&claims, KEY), KEY, &rules(), NOW);
        assert_eq!(at(json!({"sub": "a"})), Err(JwtError::Missing("exp")));
        assert_eq!(at(json!({"exp": "soon"})), Err(JwtError::Type("exp")));
        assert_eq!(at(json!({"exp": NOW - 31})), Err(JwtError::Expired));
        assert!(at(json!({"exp": NOW - 29})).is_ok());
        assert_eq!(
            at(json!({"exp": NOW + 600, "nbf": NOW + 31})),
            Err(JwtError::NotYetValid)
        );
        assert!(at(json!({"exp": NOW + 600, "nbf": NOW + 29})).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let strict = Rules {
            leeway_secs: 0,
            issuer: Some("lambdaless".into()),
            audience: Some("api".into()),
        };
        let at = |claims: Value| verify(&sign(&claims, KEY), KEY, &strict, NOW);
        let exp = NOW + 60;
        assert!(at(json!({"exp": exp, "iss": "lambdaless", "aud": "api"})).is_ok());
        assert!(at(json!({"exp": exp, "iss": "lambdaless", "aud": ["x", "api"]})).is_ok());
        assert_eq!(
            at(json!({"exp": exp, "aud": "api"})),
            Err(JwtError::Missing("iss"))
        );
        assert_eq!(
            at(json!({"exp": exp, "iss": "evil", "aud": "api"})),
            Err(JwtError::Issuer)
        );
        assert_eq!(
            at(json!({"exp": exp, "iss": "lambdaless"})),
            Err(JwtError::Missing("aud"))
        );
        assert_eq!(
            at(json!({"exp": exp, "iss": "lambdaless", "aud": ["x"]})),
            Err(JwtError::Audience)
        );
    }
}
