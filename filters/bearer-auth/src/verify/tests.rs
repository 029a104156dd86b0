use super::*;
use crate::jwks::parse_jwks;
use crate::testkit::*;
use jwt_simple::prelude::{HS256Key, MACLike};
use serde_json::json;

fn setup() -> (Signer, KeySet, Verifier) {
    let s = Signer::new("k1");
    let keys = parse_jwks(&jwks(&[&s])).unwrap().set;
    (s, keys, Verifier::new(&config("")))
}

fn with(claims: &mut serde_json::Value, k: &str, v: serde_json::Value) {
    claims[k] = v;
}

#[test]
fn a_good_token_gives_the_identity() {
    let (s, keys, v) = setup();
    let id = v.verify(&s.token("demo read"), &keys, NOW).unwrap();
    assert_eq!(id.subject.as_deref(), Some("bob"));
    assert_eq!(id.client_id.as_deref(), Some("123"));
    assert_eq!(id.scopes, ["demo", "read"]);
    assert_eq!(id.expires_at, NOW + 300);
    assert!(id.has_scopes(&["read".into()]) && !id.has_scopes(&["write".into()]));
}

#[test]
fn expiry_honours_the_configured_skew_exactly() {
    let (s, keys, v) = setup();
    let t = s.token("demo");
    // exp = NOW + 300, skew 60: accepted up to and including exp + 60, refused one second later.
    assert!(v.verify(&t, &keys, NOW + 360).is_ok());
    assert_eq!(v.verify(&t, &keys, NOW + 361), Err(TokenError::Expired));
    // jwt-simple's default tolerance (15 min) must never apply.
    assert_eq!(
        v.verify(&t, &keys, NOW + 300 + 900),
        Err(TokenError::Expired)
    );
}

#[test]
fn not_before_honours_the_skew() {
    let (s, keys, v) = setup();
    let mut c = good_claims("demo");
    with(&mut c, "nbf", json!(NOW + 100));
    let t = s.sign(c, "at+jwt");
    assert_eq!(v.verify(&t, &keys, NOW + 39), Err(TokenError::NotYetValid));
    assert!(v.verify(&t, &keys, NOW + 40).is_ok());
}

#[test]
fn zero_skew_is_exact() {
    let s = Signer::new("k1");
    let keys = parse_jwks(&jwks(&[&s])).unwrap().set;
    let v = Verifier::new(&config(r#", "clock_skew_seconds": 0"#));
    let t = s.token("demo");
    assert!(v.verify(&t, &keys, NOW + 300).is_ok());
    assert_eq!(v.verify(&t, &keys, NOW + 301), Err(TokenError::Expired));
}

#[test]
fn issued_in_the_future_beyond_skew_is_refused() {
    let (s, keys, v) = setup();
    let mut c = good_claims("demo");
    with(&mut c, "iat", json!(NOW + 61));
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::IssuedInFuture)
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let (s, keys, v) = setup();
    let mut c = good_claims("demo");
    with(&mut c, "iss", json!("https://evil.example"));
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::WrongIssuer)
    );
    let mut c = good_claims("demo");
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::WrongIssuer)
    );
    let mut c = good_claims("demo");
    with(&mut c, "aud", json!(["other", "another"]));
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::WrongAudience)
    );
    let mut c = good_claims("demo");
    with(&mut c, "aud", json!(["other", AUDIENCE]));
    assert!(v.verify(&s.sign(c, "at+jwt"), &keys, NOW).is_ok());
}

#[test]
fn exp_is_required_and_must_be_a_number() {
    let (s, keys, v) = setup();
    let mut c = good_claims("demo");
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::NoExpiry)
    );
    let mut c = good_claims("demo");
    with(&mut c, "exp", json!("tomorrow"));
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::MalformedClaims)
    );
    let mut c = good_claims("demo");
    with(&mut c, "aud", json!(42));
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::MalformedClaims)
    );
    let mut c = good_claims("demo");
    with(&mut c, "scope", json!({"a": 1}));
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::MalformedClaims)
    );
}

#[test]
fn typ_must_be_at_jwt_when_configured() {
    let (s, keys, v) = setup();
    assert_eq!(
        v.verify(&s.sign(good_claims("demo"), "JWT"), &keys, NOW),
        Err(TokenError::WrongType)
    );
    assert!(
        v.verify(
            &s.sign(good_claims("demo"), "application/AT+JWT"),
            &keys,
            NOW
        )
        .is_ok()
    );
    // Without the requirement an ordinary JWT is fine.
    let loose = Verifier::new(
        &crate::config::Config::from_json(
            config_json("")
                .replace(r#""required_typ": "at+jwt","#, "")
                .as_bytes(),
        )
        .unwrap(),
    );
    assert!(
        loose
            .verify(&s.sign(good_claims("demo"), "JWT"), &keys, NOW)
            .is_ok()
    );
}

#[test]
fn a_signature_from_another_key_is_refused() {
    let (_, keys, v) = setup();
    let impostor = Signer::new("k1");
    assert_eq!(
        v.verify(&impostor.token("demo"), &keys, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn tampered_payload_is_refused() {
    let (s, keys, v) = setup();
    let t = s.token("demo");
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = good_claims("demo admin");
    with(&mut c, "sub", json!("alice"));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(v.verify(&forged, &keys, NOW), Err(TokenError::BadSignature));
}

#[test]
fn unknown_kid_is_reported_with_the_kid() {
    let (_, keys, v) = setup();
    let other = Signer::new("k2");
    assert_eq!(
        v.verify(&other.token("demo"), &keys, NOW),
        Err(TokenError::UnknownKid("k2".into()))
    );
}

#[test]
fn alg_none_is_always_refused() {
    let (_, keys, v) = setup();
    for alg in ["none", "None", "NONE"] {
        let t = unsigned(&json!({"alg": alg, "typ": "at+jwt"}), &good_claims("demo"));
        assert_eq!(v.verify(&t, &keys, NOW), Err(TokenError::AlgNone));
        let t = format!(
            "{}.{}.",
            b64(json!({"alg": alg}).to_string().as_bytes()),
            b64(b"{}")
        );
        assert_eq!(v.verify(&t, &keys, NOW), Err(TokenError::AlgNone));
    }
}

#[test]
fn hs256_signed_with_the_public_key_fails() {
    let (s, keys, v) = setup();
    // The classic confusion attack: the public key bytes used as an HMAC secret.
    let public = s.public_key();
    let jwk_x = b64(&public);
    for secret in [public.clone(), jwk_x.into_bytes(), jwks(&[&s])] {
        let mac = HS256Key::from_bytes(&secret).with_key_id("k1");
        let claims = jwt_simple::prelude::Claims::with_custom_claims(
            serde_json::Map::new(),
            jwt_simple::prelude::Duration::from_secs(60),
        );
        let t = mac.authenticate(claims).unwrap();
        assert_eq!(v.verify(&t, &keys, NOW), Err(TokenError::HmacNotAccepted));
    }
}

#[test]
fn hs256_with_a_configured_secret_is_accepted() {
    let secret = [9u8; 32];
    let cfg = config(&format!(
        r#", "hmac_secrets": [{{"kid": "h1", "alg": "HS256", "secret_base64url": "{}"}}]"#,
        b64(&secret)
    ));
    let v = Verifier::new(&cfg);
    let mut claims = jwt_simple::prelude::Claims::with_custom_claims(
        match good_claims("demo") {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        },
        jwt_simple::prelude::Duration::from_secs(1),
    );
    claims.issued_at = None;
    claims.expires_at = None;
    claims.invalid_before = None;
    let opts = jwt_simple::prelude::HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    let good = HS256Key::from_bytes(&secret).with_key_id("h1");
    let t = good
        .authenticate_with_options(claims.clone(), &opts)
        .unwrap();
    assert!(v.verify(&t, &KeySet::default(), NOW).is_ok());
    let wrong = HS256Key::from_bytes(&[8u8; 32]).with_key_id("h1");
    let t = wrong.authenticate_with_options(claims, &opts).unwrap();
    assert_eq!(
        v.verify(&t, &KeySet::default(), NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn alg_must_fit_the_key() {
    let (s, keys, v) = setup();
    let t = s.token("demo");
    let parts: Vec<&str> = t.split('.').collect();
    let header = json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"});
    let swapped = format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    assert_eq!(
        v.verify(&swapped, &keys, NOW),
        Err(TokenError::AlgKeyMismatch)
    );
    let header = json!({"alg": "PS999", "kid": "k1"});
    let odd = format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    assert_eq!(v.verify(&odd, &keys, NOW), Err(TokenError::UnsupportedAlg));
}

#[test]
fn missing_kid_uses_the_only_fitting_key() {
    let s = Signer::new("k1");
    let keys = parse_jwks(&jwks(&[&s])).unwrap().set;
    let v = Verifier::new(&config(""));
    let no_kid = s.without_kid();
    assert!(v.verify(&no_kid.token("demo"), &keys, NOW).is_ok());
    let s2 = Signer::new("k2");
    let two = parse_jwks(&jwks(&[&s, &s2])).unwrap().set;
    assert_eq!(
        v.verify(&no_kid.token("demo"), &two, NOW),
        Err(TokenError::NoKeyForToken)
    );
}

#[test]
fn size_is_checked_before_parsing() {
    let (_, keys, v) = setup();
    let huge = "a".repeat(8193);
    assert_eq!(v.verify(&huge, &keys, NOW), Err(TokenError::TooLarge));
    assert_eq!(
        v.verify(&"a".repeat(100), &keys, NOW),
        Err(TokenError::Malformed)
    );
}

#[test]
fn critical_headers_are_refused() {
    let (_, keys, v) = setup();
    let t = unsigned(
        &json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt", "crit": ["exp"]}),
        &good_claims("demo"),
    );
    assert_eq!(v.verify(&t, &keys, NOW), Err(TokenError::UnsupportedCrit));
}

#[test]
fn claim_headers_render_arrays_with_spaces() {
    let s = Signer::new("k1");
    let keys = parse_jwks(&jwks(&[&s])).unwrap().set;
    let v = Verifier::new(&config(
        r#", "claim_headers": [{"claim": "groups", "header": "x-auth-groups"},
                                {"claim": "aud", "header": "x-auth-aud"},
                                {"claim": "tenant", "header": "x-auth-tenant"},
                                {"claim": "absent", "header": "x-auth-absent"}]"#,
    ));
    let mut c = good_claims("demo");
    with(&mut c, "groups", json!(["admins", "ops"]));
    with(&mut c, "tenant", json!(7));
    let id = v.verify(&s.sign(c, "at+jwt"), &keys, NOW).unwrap();
    assert_eq!(
        id.extra_headers,
        vec![
            ("x-auth-groups".to_string(), "admins ops".to_string()),
            ("x-auth-aud".to_string(), AUDIENCE.to_string()),
            ("x-auth-tenant".to_string(), "7".to_string()),
        ]
    );
}

#[test]
fn control_characters_in_identity_claims_are_refused() {
    let (s, keys, v) = setup();
    let mut c = good_claims("demo");
    with(&mut c, "sub", json!("bob\r\nx-auth-scope: admin"));
    assert_eq!(
        v.verify(&s.sign(c, "at+jwt"), &keys, NOW),
        Err(TokenError::MalformedClaims)
    );
}

#[test]
fn descriptions_never_echo_the_token() {
    let (s, keys, v) = setup();
    let t = s.token("demo");
    let err = v.verify(&t, &keys, NOW + 10_000).unwrap_err();
    assert!(!err.description().contains(&t[..20]));
}

/// Generated tokens (proptest): whatever a client presents, the verifier answers with a reason,
/// and a good token with any of its bytes changed is never accepted.
#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_is_refused_with_a_reason(token in "(?s).{0,300}") {
            let (_, keys, v) = setup();
            prop_assert!(v.verify(&token, &keys, NOW).is_err());
        }

        #[test]
        fn three_parts_of_anything_are_refused_with_a_reason(
            parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,80}", 3),
        ) {
            let (_, keys, v) = setup();
            prop_assert!(v.verify(&parts.join("."), &keys, NOW).is_err());
        }

        #[test]
        fn a_changed_byte_is_never_accepted(at in any::<prop::sample::Index>(), with in b'!'..=b'~') {
            let (s, keys, v) = setup();
            let token = s.token("demo");
            let mut bytes = token.clone().into_bytes();
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != with);
            bytes[i] = with;
            let changed = String::from_utf8(bytes).unwrap();
            // base64url has aliases for the last character's unused bits: a change there may
            // decode to the same bytes, and then it is the same token.
            let same = |t: &str| {
                t.split('.')
                    .map(crate::b64::decode_url)
                    .collect::<Vec<_>>()
            };
            prop_assume!(same(&changed) != same(&token));
            prop_assert!(v.verify(&changed, &keys, NOW).is_err(), "{} accepted", changed);
        }
    }
}
