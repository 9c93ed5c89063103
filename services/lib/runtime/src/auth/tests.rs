//! Unit tests of the authorizer: keys, users, JWT claims, failure throttling.

use super::*;
use serde_json::json;

fn settings(keys: &str, secret: Option<&str>) -> AuthSettings {
    AuthSettings {
        api_keys: keys.to_owned(),
        jwt_secret: secret.map(|s| s.to_owned().into()),
        ..AuthSettings::default()
    }
}

fn headers(k: &str, v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
        v.parse().unwrap(),
    );
    h
}

fn bearer(claims: serde_json::Value, secret: &str) -> HeaderMap {
    let token = jwt::sign(&claims, secret.as_bytes());
    headers("authorization", &format!("Bearer {token}"))
}

fn now() -> u64 {
    jwt::now()
}

fn guard(s: &AuthSettings, scope: &'static str) -> Guard {
    let a: Arc<dyn Authorizer> = Arc::new(KeysAndJwt::from_settings(s).unwrap());
    Guard::new(a, Limits::none(), scope)
}

#[tokio::test]
async fn api_keys_scopes_and_users() {
    let s = settings(
        "all=*@local, reader=users:read, fetcher=fetch@alice_1",
        None,
    );
    let write = guard(&s, USERS_WRITE);
    let p = write
        .check(&headers("x-api-key", "all"), None)
        .await
        .unwrap();
    assert_eq!((p.user(), p.has_scope(ADMIN)), (Some("local"), true));
    assert!(write
        .check(&headers("authorization", "Bearer all"), None)
        .await
        .is_ok());
    assert_eq!(
        write.check(&headers("x-api-key", "reader"), None).await,
        Err(AuthError::Forbidden(USERS_WRITE))
    );
    assert_eq!(
        write.check(&headers("x-api-key", "nope"), None).await,
        Err(AuthError::Invalid)
    );
    assert_eq!(
        write.check(&HeaderMap::new(), None).await,
        Err(AuthError::Missing)
    );
    let fetch = guard(&s, FETCH);
    let p = fetch
        .check(&headers("x-api-key", "fetcher"), None)
        .await
        .unwrap();
    assert_eq!((p.user(), p.has_scope(ADMIN)), (Some("alice_1"), false));
    let p = guard(&s, USERS_READ)
        .check(&headers("x-api-key", "reader"), None)
        .await
        .unwrap();
    assert_eq!(p.user(), None);
}

#[test]
fn bad_key_specs_name_the_setting() {
    for spec in [
        "novalue",
        "=users:read",
        "k=users:delete",
        "k=fetch@",
        "k=fetch@a/b",
    ] {
        let err = KeysAndJwt::from_settings(&settings(spec, None))
            .err()
            .expect(spec);
        assert!(
            err.to_string().contains("LAMBDALESS_AUTH__API_KEYS"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn jwt_needs_a_valid_signature_and_exp_and_honours_nbf() {
    let s = settings("", Some("s3cret"));
    let g = guard(&s, ORDERS_READ);
    let exp = now() + 600;
    let p = g
        .check(
            &bearer(
                json!({"sub":"u1","scope":"orders:read","exp":exp}),
                "s3cret",
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!((p.id.as_str(), p.user()), ("jwt:u1", Some("u1")));
    let list = bearer(json!({"scopes":["orders:read"],"exp":exp}), "s3cret");
    assert_eq!(g.check(&list, None).await.unwrap().user(), None);
    let other = bearer(json!({"scope":"users:read","exp":exp}), "s3cret");
    assert_eq!(
        g.check(&other, None).await,
        Err(AuthError::Forbidden(ORDERS_READ))
    );
    for refused in [
        bearer(json!({"scope":"orders:read","exp":exp}), "wrong"),
        bearer(json!({"scope":"orders:read"}), "s3cret"),
        bearer(json!({"scope":"orders:read","exp":1}), "s3cret"),
        bearer(
            json!({"scope":"orders:read","exp":exp,"nbf":now() + 3600}),
            "s3cret",
        ),
    ] {
        assert_eq!(g.check(&refused, None).await, Err(AuthError::Invalid));
    }
    // A clock a few seconds apart is within the leeway.
    let skewed = bearer(
        json!({"scope":"orders:read","exp":exp,"nbf":now() + 5}),
        "s3cret",
    );
    assert!(g.check(&skewed, None).await.is_ok());
    // alg=none is refused.
    let none = format!(
        "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        "eyJzY29wZSI6Im9yZGVyczpyZWFkIiwiZXhwIjo5OTk5OTk5OTk5fQ"
    );
    assert_eq!(
        g.check(&headers("authorization", &none), None).await,
        Err(AuthError::Invalid)
    );
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_set() {
    let s = AuthSettings {
        jwt_issuer: Some("https://id.example".into()),
        jwt_audience: Some("lambdaless".into()),
        ..settings("", Some("k"))
    };
    let g = guard(&s, FETCH);
    let exp = now() + 600;
    let ok = json!({"scope":"fetch","exp":exp,"iss":"https://id.example","aud":"lambdaless"});
    assert!(g.check(&bearer(ok, "k"), None).await.is_ok());
    for bad in [
        json!({"scope":"fetch","exp":exp,"iss":"https://id.example","aud":"other"}),
        json!({"scope":"fetch","exp":exp,"iss":"https://evil.example","aud":"lambdaless"}),
        json!({"scope":"fetch","exp":exp,"aud":"lambdaless"}),
        json!({"scope":"fetch","exp":exp,"iss":"https://id.example"}),
    ] {
        assert_eq!(
            g.check(&bearer(bad, "k"), None).await,
            Err(AuthError::Invalid)
        );
    }
}

#[tokio::test]
async fn failed_attempts_block_the_address_not_others() {
    let s = AuthSettings {
        failures_per_minute: 3,
        ..settings("good=*", None)
    };
    let a: Arc<dyn Authorizer> = Arc::new(KeysAndJwt::from_settings(&s).unwrap());
    let g = Guard::new(a, Limits::new(&s, &ThrottleSettings::default()), FETCH);
    let bad = headers("x-api-key", "bad");
    for _ in 0..3 {
        assert_eq!(
            g.check(&bad, Some("10.0.0.1")).await,
            Err(AuthError::Invalid)
        );
    }
    assert!(matches!(
        g.check(&bad, Some("10.0.0.1")).await,
        Err(AuthError::Blocked(_))
    ));
    let good = headers("x-api-key", "good");
    assert!(matches!(
        g.check(&good, Some("10.0.0.1")).await,
        Err(AuthError::Blocked(_))
    ));
    assert!(g.check(&good, Some("10.0.0.2")).await.is_ok());
    // Missing credentials are not guesses and do not count.
    for _ in 0..10 {
        assert_eq!(
            g.check(&HeaderMap::new(), Some("10.0.0.3")).await,
            Err(AuthError::Missing)
        );
    }
    assert!(g.check(&good, Some("10.0.0.3")).await.is_ok());
}
