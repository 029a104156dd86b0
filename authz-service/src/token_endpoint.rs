//! `/oauth2/token` as plain logic: from the raw request parts to a token or an RFC 6749 §5.2
//! error. Order: form, grant type, client authentication (throttled), grant, issuance.

use std::net::IpAddr;

use crate::client_auth::{self, Credentials};
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::grants::{self, GrantType};
use crate::issuer::{self, TokenResponse};
use crate::service::Authz;

/// The parts of an HTTP request the token endpoint looks at.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub caller_ip: Option<IpAddr>,
}

/// The result, with what the log line needs.
pub struct Outcome {
    pub result: Result<TokenResponse, OAuthError>,
    pub client_id: Option<String>,
    pub grant_type: Option<&'static str>,
    /// Whether the client tried `Authorization: Basic`.
    pub used_basic: bool,
}

pub fn handle(authz: &Authz, req: &TokenRequest) -> Outcome {
    let mut out = Outcome {
        result: Err(OAuthError::server_error("unreachable")),
        client_id: None,
        grant_type: None,
        used_basic: req.authorization.is_some(),
    };
    out.result = run(authz, req, &mut out);
    out
}

fn run(authz: &Authz, req: &TokenRequest, out: &mut Outcome) -> Result<TokenResponse, OAuthError> {
    let form_type = req
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form_type != Some(true) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Form::parse(&req.body)?;
    let grant_type = GrantType::parse(form.require("grant_type")?)?;
    out.grant_type = Some(grant_type.as_str());

    let creds = client_auth::extract(req.authorization.as_deref(), &form)?;
    out.client_id = creds.claimed_client_id();
    let client = authenticate_throttled(authz, &creds, req.caller_ip, out.client_id.as_deref())?;

    // The browser-flow grants issue refresh tokens too, so they return the whole response.
    let claimed = out.client_id.as_deref();
    match grant_type {
        GrantType::AuthorizationCode => {
            return crate::flows::code_grant::exchange(authz, client.as_ref(), claimed, &form);
        }
        GrantType::RefreshToken => {
            return crate::flows::refresh_grant::refresh(authz, client.as_ref(), claimed, &form);
        }
        _ => {}
    }
    let grant = grants::run(authz, grant_type, client.as_ref(), &form)?;
    out.client_id = Some(grant.client_id.clone());
    issuer::issue(authz, &grant)
}

/// Authenticate, refusing callers (by client id and by address) that failed too often lately,
/// and counting each new failure against both.
pub(crate) fn authenticate_throttled(
    authz: &Authz,
    creds: &Credentials,
    ip: Option<IpAddr>,
    client_id: Option<&str>,
) -> Result<Option<client_auth::AuthenticatedClient>, OAuthError> {
    if matches!(creds, Credentials::None { .. }) {
        return Ok(None);
    }
    let now = authz.clock.now();
    let keys: Vec<String> = ip
        .map(|ip| format!("ip:{ip}"))
        .into_iter()
        .chain(client_id.map(|c| format!("client:{c}")))
        .collect();
    if let Some(wait) = keys
        .iter()
        .filter_map(|k| authz.throttle.retry_after(k, now))
        .max()
    {
        let mut e = OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many failed client authentications; try again later",
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let result = client_auth::authenticate(authz, creds);
    if matches!(&result, Err(e) if e.code == ErrorCode::InvalidClient) {
        for k in &keys {
            authz.throttle.record_failure(k, now);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use jwt_simple::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::admin::{self, NewClient};
    use crate::clock::{Clock, ManualClock};
    use crate::config::Config;
    use crate::grants::{CLIENT_CREDENTIALS, JWT_BEARER};
    use crate::keys::{SigningAlg, SigningKey};
    use crate::storage::SqliteStorage;

    const NOW: i64 = 1_800_000_000;
    const ISSUER: &str = "https://gw.test";

    struct Fixture {
        authz: Authz,
        clock: Arc<ManualClock>,
        secret: String,
        client_key: SigningKey,
    }

    fn fixture() -> Fixture {
        let clock = Arc::new(ManualClock::new(NOW));
        let config = Config {
            issuer: ISSUER.into(),
            ..Config::default()
        };
        let authz = Authz::with_parts(
            config,
            Arc::new(SqliteStorage::in_memory().unwrap()),
            clock.clone(),
        )
        .unwrap();
        authz.ensure_signing_key().unwrap();
        let secret = admin::add_client(
            &authz,
            NewClient {
                id: "svc".into(),
                with_secret: true,
                grant_types: vec![CLIENT_CREDENTIALS.into()],
                scopes: vec!["demo".into(), "read".into()],
                default_scopes: Some(vec!["demo".into()]),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
        let client_key = SigningKey::generate(SigningAlg::ES256).unwrap();
        admin::add_client(
            &authz,
            NewClient {
                id: "jwt".into(),
                grant_types: vec![CLIENT_CREDENTIALS.into(), JWT_BEARER.into()],
                scopes: vec!["demo".into()],
                jwks: Some(serde_json::json!({"keys": [client_key.public_jwk("k1")]})),
                ..Default::default()
            },
        )
        .unwrap();
        authz
            .storage
            .insert_user(&crate::storage::User {
                username: "bob".into(),
                password_hash: "unused".into(),
                created_at: NOW,
            })
            .unwrap();
        Fixture {
            authz,
            clock,
            secret,
            client_key,
        }
    }

    fn form_req(body: &str, authorization: Option<String>) -> TokenRequest {
        TokenRequest {
            authorization,
            content_type: Some("application/x-www-form-urlencoded".into()),
            body: body.as_bytes().to_vec(),
            caller_ip: Some("10.0.0.1".parse().unwrap()),
        }
    }

    fn basic(id: &str, secret: &str) -> Option<String> {
        Some(format!(
            "Basic {}",
            STANDARD.encode(format!("{id}:{secret}"))
        ))
    }

    fn payload(token: &str) -> Value {
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    fn assertion(f: &Fixture, sub: &str, aud: &str, exp_in: i64, jti: &str) -> String {
        let mut claims = Claims::create(Duration::from_secs(60))
            .with_issuer("jwt")
            .with_subject(sub)
            .with_audience(aud)
            .with_jwt_id(jti);
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW as u64));
        claims.expires_at = Some(UnixTimeStamp::from_secs((NOW + exp_in) as u64));
        claims.invalid_before = None;
        sign_as_client(f, claims)
    }

    /// Sign with the test client's key, under its registered kid `k1`.
    fn sign_as_client(f: &Fixture, claims: JWTClaims<NoCustomClaims>) -> String {
        let der = f.client_key.to_der().unwrap();
        let key = SigningKey::from_der(SigningAlg::ES256, &der, "k1").unwrap();
        key.sign(claims, "JWT").unwrap()
    }

    fn code(f: &Fixture, req: &TokenRequest) -> ErrorCode {
        handle(&f.authz, req).result.unwrap_err().code
    }

    #[test]
    fn client_credentials_issues_an_rfc9068_token() {
        let f = fixture();
        let req = form_req("grant_type=client_credentials", basic("svc", &f.secret));
        let resp = handle(&f.authz, &req).result.unwrap();
        assert_eq!(resp.token_type, "Bearer");
        assert_eq!(resp.scope, "demo");
        assert_eq!(resp.expires_in, 3600);
        let meta = Token::decode_metadata(&resp.access_token).unwrap();
        assert_eq!(meta.signature_type(), Some("at+jwt"));
        assert_eq!(meta.algorithm(), "EdDSA");
        let c = payload(&resp.access_token);
        assert_eq!(c["iss"], ISSUER);
        assert_eq!(c["sub"], "svc");
        assert_eq!(c["client_id"], "svc");
        assert_eq!(c["aud"], "wasmgate-api");
        assert_eq!(c["scope"], "demo");
        assert_eq!(c["iat"], NOW);
        assert_eq!(c["exp"], NOW + 3600);
        // Recorded before it was handed out.
        let jti = c["jti"].as_str().unwrap();
        assert_eq!(
            f.authz
                .storage
                .issued_token(jti)
                .unwrap()
                .unwrap()
                .client_id,
            "svc"
        );
        // Post method and an explicit subset of scopes.
        let body = format!(
            "grant_type=client_credentials&client_id=svc&client_secret={}&scope=read",
            f.secret
        );
        let resp = handle(&f.authz, &form_req(&body, None)).result.unwrap();
        assert_eq!(resp.scope, "read");
    }

    #[test]
    fn token_endpoint_errors_follow_rfc6749() {
        let f = fixture();
        let ok = basic("svc", &f.secret);
        assert_eq!(
            code(
                &f,
                &form_req("grant_type=client_credentials", basic("svc", "nope"))
            ),
            ErrorCode::InvalidClient
        );
        assert_eq!(
            code(
                &f,
                &form_req("grant_type=client_credentials", basic("ghost", "x"))
            ),
            ErrorCode::InvalidClient
        );
        assert_eq!(
            code(&f, &form_req("grant_type=client_credentials", None)),
            ErrorCode::InvalidClient
        );
        assert_eq!(
            code(&f, &form_req("scope=demo", ok.clone())),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(
                &f,
                &form_req(
                    "grant_type=client_credentials&grant_type=client_credentials",
                    ok.clone()
                )
            ),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&f, &form_req("grant_type=password", ok.clone())),
            ErrorCode::UnsupportedGrantType
        );
        assert_eq!(
            code(
                &f,
                &form_req("grant_type=client_credentials&scope=admin", ok.clone())
            ),
            ErrorCode::InvalidScope
        );
        // `svc` did not register the JWT bearer grant.
        let a = assertion(&f, "jwt", &format!("{ISSUER}/oauth2/token"), 60, "x");
        assert_eq!(
            code(
                &f,
                &form_req(
                    &format!("grant_type={JWT_BEARER}&assertion={a}"),
                    ok.clone()
                )
            ),
            ErrorCode::InvalidGrant,
            "assertion issued by another client than the authenticated one"
        );
        let mut json = form_req("grant_type=client_credentials", ok);
        json.content_type = Some("application/json".into());
        assert_eq!(code(&f, &json), ErrorCode::InvalidRequest);
    }

    #[test]
    fn unauthorized_client_when_grant_not_registered() {
        let f = fixture();
        admin::add_client(
            &f.authz,
            NewClient {
                id: "bearer-only".into(),
                grant_types: vec![JWT_BEARER.into()],
                scopes: vec!["demo".into()],
                jwks: Some(serde_json::json!({"keys": [f.client_key.public_jwk("k1")]})),
                ..Default::default()
            },
        )
        .unwrap();
        // Authenticated with private_key_jwt, but only the JWT bearer grant is registered.
        let mut claims = Claims::create(Duration::from_secs(60))
            .with_issuer("bearer-only")
            .with_subject("bearer-only")
            .with_audience(format!("{ISSUER}/oauth2/token"))
            .with_jwt_id("a1");
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW as u64));
        claims.expires_at = Some(UnixTimeStamp::from_secs((NOW + 60) as u64));
        let a = sign_as_client(&f, claims);
        let body = format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={a}",
            crate::client_auth::CLIENT_ASSERTION_TYPE_JWT
        );
        assert_eq!(
            code(&f, &form_req(&body, None)),
            ErrorCode::UnauthorizedClient
        );
    }

    #[test]
    fn private_key_jwt_authenticates_once_per_jti() {
        let f = fixture();
        let aud = format!("{ISSUER}/oauth2/token");
        let a = assertion(&f, "jwt", &aud, 60, "once");
        let body = format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={a}",
            crate::client_auth::CLIENT_ASSERTION_TYPE_JWT
        );
        let resp = handle(&f.authz, &form_req(&body, None)).result.unwrap();
        assert_eq!(payload(&resp.access_token)["client_id"], "jwt");
        let e = handle(&f.authz, &form_req(&body, None)).result.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert!(e.description.contains("already used"), "{}", e.description);
        // sub must be the client for client authentication.
        let a = assertion(&f, "bob", &aud, 60, "sub-bob");
        let body = format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={a}",
            crate::client_auth::CLIENT_ASSERTION_TYPE_JWT
        );
        assert_eq!(code(&f, &form_req(&body, None)), ErrorCode::InvalidClient);
    }

    #[test]
    fn jwt_bearer_grant_checks_claims_and_replay() {
        let f = fixture();
        let aud = format!("{ISSUER}/oauth2/token");
        let req = |a: &str| form_req(&format!("grant_type={JWT_BEARER}&assertion={a}"), None);

        let resp = handle(&f.authz, &req(&assertion(&f, "bob", &aud, 60, "j1")))
            .result
            .unwrap();
        let c = payload(&resp.access_token);
        assert_eq!(c["sub"], "bob");
        assert_eq!(c["client_id"], "jwt");

        let cases = [
            (assertion(&f, "bob", &aud, 60, "j1"), "already used"),
            (
                assertion(&f, "mallory", &aud, 60, "j2"),
                "neither the client nor a known user",
            ),
            (
                assertion(&f, "bob", "https://elsewhere/token", 60, "j3"),
                "rejected",
            ),
            (assertion(&f, "bob", &aud, 7200, "j4"), "more than"),
            (assertion(&f, "bob", &aud, -120, "j5"), "rejected"),
            ("not-a-jwt".to_string(), "iss"),
        ];
        for (a, why) in cases {
            let e = handle(&f.authz, &req(&a)).result.unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidGrant, "{why}");
            assert!(e.description.contains(why), "{why}: {}", e.description);
        }
        // The replay store forgets a jti only after it expired, when it is useless anyway.
        f.clock.advance(3600);
        f.authz.storage.purge_expired(f.clock.now()).unwrap();
        let e = handle(&f.authz, &req(&assertion(&f, "bob", &aud, 60, "j1")))
            .result
            .unwrap_err();
        assert!(e.description.contains("expired"), "{}", e.description);
    }

    #[test]
    fn failed_authentications_are_throttled_per_client() {
        let f = fixture();
        let limit = f.authz.config.security.auth_failure_limit;
        for _ in 0..limit {
            assert_eq!(
                code(
                    &f,
                    &form_req("grant_type=client_credentials", basic("svc", "bad"))
                ),
                ErrorCode::InvalidClient
            );
        }
        // Now even the right secret waits, from any address.
        let mut req = form_req("grant_type=client_credentials", basic("svc", &f.secret));
        req.caller_ip = Some("10.9.9.9".parse().unwrap());
        let e = handle(&f.authz, &req).result.unwrap_err();
        assert_eq!(e.code, ErrorCode::TemporarilyUnavailable);
        assert!(e.retry_after.unwrap() > 0);
        f.clock
            .advance(f.authz.config.security.auth_failure_window_secs + 1);
        assert!(handle(&f.authz, &req).result.is_ok());
    }
}
