//! The time-bound rules of the browser flows, at chosen instants (a manual clock), with the
//! real SQLite storage in memory.

use std::sync::Arc;

use crate::admin::{self, NewClient};
use crate::client_auth::{AuthMethod, AuthenticatedClient};
use crate::clock::ManualClock;
use crate::config::Config;
use crate::error::ErrorCode;
use crate::form::Form;
use crate::service::Authz;
use crate::storage::{SqliteStorage, User};

use super::authorize::{self, AuthorizationRequest};
use super::login::{self, LoginError};
use super::{code_grant, introspect, pkce, refresh_grant, session, web};

const NOW: i64 = 1_800_000_000;
const REDIRECT: &str = "https://app.test/cb";
const VERIFIER: &str = "0123456789abcdefghijklmnopqrstuvwxyz-._~ABCDEFG";

struct Fixture {
    authz: Authz,
    clock: Arc<ManualClock>,
}

fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(NOW));
    let config = Config {
        issuer: "https://gw.test".into(),
        ..Config::default()
    };
    let authz = Authz::with_parts(
        config,
        Arc::new(SqliteStorage::in_memory().unwrap()),
        clock.clone(),
    )
    .unwrap();
    authz.ensure_signing_key().unwrap();
    admin::add_client(
        &authz,
        NewClient {
            id: "app".into(),
            with_secret: true,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: vec!["demo".into()],
            redirect_uris: vec![REDIRECT.into()],
            ..Default::default()
        },
    )
    .unwrap();
    authz
        .storage
        .insert_user(&User {
            username: "bob".into(),
            password_hash: crate::secrets::hash_password("secret").unwrap(),
            created_at: NOW,
        })
        .unwrap();
    Fixture { authz, clock }
}

fn request(f: &Fixture) -> AuthorizationRequest {
    let q = format!(
        "response_type=code&client_id=app&redirect_uri={REDIRECT}&scope=demo&state=s\
         &code_challenge={}&code_challenge_method=S256",
        pkce::s256(VERIFIER)
    );
    authorize::validate(&f.authz, &q).unwrap()
}

fn client(f: &Fixture) -> AuthenticatedClient {
    AuthenticatedClient {
        client: f.authz.storage.client("app").unwrap().unwrap(),
        method: AuthMethod::ClientSecretBasic,
    }
}

fn exchange_form(code: &str) -> Form {
    Form::parse(
        format!(
            "grant_type=authorization_code&code={code}&redirect_uri={REDIRECT}&code_verifier={VERIFIER}"
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn a_code_lives_at_most_its_lifetime() {
    let f = fixture();
    let ar = request(&f);
    let code = code_grant::issue_code(&f.authz, "bob", &ar).unwrap();
    f.clock.advance(f.authz.config.browser.code_lifetime_secs);
    let e =
        code_grant::exchange(&f.authz, Some(&client(&f)), None, &exchange_form(&code)).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    assert!(e.description.contains("expired"), "{}", e.description);

    // One second earlier it works.
    let code = code_grant::issue_code(&f.authz, "bob", &ar).unwrap();
    f.clock
        .advance(f.authz.config.browser.code_lifetime_secs - 1);
    let tokens =
        code_grant::exchange(&f.authz, Some(&client(&f)), None, &exchange_form(&code)).unwrap();
    assert!(tokens.refresh_token.is_some());
}

#[test]
fn code_lifetime_over_60_s_is_refused_by_the_config() {
    let mut c = Config::default();
    c.browser.code_lifetime_secs = 61;
    assert!(c.validate().unwrap_err().contains("code_lifetime_secs"));
    c.browser.code_lifetime_secs = 60;
    c.validate().unwrap();
}

#[test]
fn refresh_tokens_and_access_tokens_expire() {
    let f = fixture();
    let code = code_grant::issue_code(&f.authz, "bob", &request(&f)).unwrap();
    let tokens =
        code_grant::exchange(&f.authz, Some(&client(&f)), None, &exchange_form(&code)).unwrap();
    let caller = client(&f);
    let form = |t: &str| Form::parse(format!("token={t}").as_bytes()).unwrap();
    let active =
        introspect::introspect(&f.authz, Some(&caller), &form(&tokens.access_token)).unwrap();
    assert_eq!(active["active"], true);
    assert_eq!(active["exp"], NOW + tokens.expires_in);

    f.clock.advance(tokens.expires_in);
    let expired =
        introspect::introspect(&f.authz, Some(&caller), &form(&tokens.access_token)).unwrap();
    assert_eq!(expired, serde_json::json!({"active": false}));

    let rt = tokens.refresh_token.unwrap();
    f.clock
        .advance(f.authz.config.browser.refresh_token_lifetime_secs);
    let e = refresh_grant::refresh(
        &f.authz,
        Some(&caller),
        None,
        &Form::parse(format!("grant_type=refresh_token&refresh_token={rt}").as_bytes()).unwrap(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    assert!(e.description.contains("expired"), "{}", e.description);
}

#[test]
fn sessions_and_pending_requests_expire() {
    let f = fixture();
    let set = session::start(&f.authz, "bob").unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    assert_eq!(
        session::current(&f.authz, Some(&cookie)).unwrap().subject,
        "bob"
    );

    // The login page for a pending request that outlived its lifetime says so.
    let ar = request(&f);
    let q = {
        let sealed = f
            .authz
            .flows
            .signer
            .seal("authorization-request", &ar)
            .unwrap();
        format!("request={sealed}")
    };
    let page = |q: &str| web::PageRequest {
        query: q.to_string(),
        cookie: None,
        body: Vec::new(),
        ip: None,
    };
    assert!(matches!(
        web::login_form(&f.authz, &page(&q)),
        web::Reply::Page { status, .. } if status == axum::http::StatusCode::OK
    ));
    f.clock
        .advance(f.authz.config.browser.request_lifetime_secs);
    assert!(matches!(
        web::login_form(&f.authz, &page(&q)),
        web::Reply::Page { status, html, .. }
            if status == axum::http::StatusCode::BAD_REQUEST && html.contains("expired")
    ));

    f.clock
        .advance(f.authz.config.browser.session_lifetime_secs);
    assert_eq!(session::current(&f.authz, Some(&cookie)), None);
    // A session of a user who was removed ends at once.
    let set = session::start(&f.authz, "bob").unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    f.authz.storage.delete_user("bob").unwrap();
    assert_eq!(session::current(&f.authz, Some(&cookie)), None);
}

#[test]
fn failed_logins_are_throttled_per_user_and_per_address() {
    let clock = Arc::new(ManualClock::new(NOW));
    let mut config = Config::default();
    config.browser.login_failure_limit = 3;
    config.browser.login_ip_failure_limit = 4;
    let authz = Authz::with_parts(
        config,
        Arc::new(SqliteStorage::in_memory().unwrap()),
        clock.clone(),
    )
    .unwrap();
    for name in ["bob", "alice"] {
        authz
            .storage
            .insert_user(&User {
                username: name.into(),
                password_hash: crate::secrets::hash_password("secret").unwrap(),
                created_at: NOW,
            })
            .unwrap();
    }
    let ip1 = Some("10.0.0.1".parse().unwrap());
    let ip2 = Some("10.0.0.2".parse().unwrap());
    // Per user: three failures for bob, from different addresses, lock bob everywhere.
    for ip in [ip1, ip2, None] {
        assert_eq!(
            login::check(&authz, "bob", "wrong", ip),
            Err(LoginError::BadCredentials)
        );
    }
    assert!(matches!(
        login::check(&authz, "bob", "secret", ip2),
        Err(LoginError::Throttled(_))
    ));
    // ... but not alice.
    assert_eq!(login::check(&authz, "alice", "secret", ip2), Ok(()));
    // Per address: guessing many names from ip1 locks ip1 (its 4th failure counts bob's one).
    for name in ["carol", "dave", "erin"] {
        assert_eq!(
            login::check(&authz, name, "x", ip1),
            Err(LoginError::BadCredentials)
        );
    }
    assert!(matches!(
        login::check(&authz, "alice", "secret", ip1),
        Err(LoginError::Throttled(_))
    ));
    assert_eq!(login::check(&authz, "alice", "secret", ip2), Ok(()));
    // The window passes.
    clock.advance(authz.config.browser.login_failure_window_secs);
    assert_eq!(login::check(&authz, "bob", "secret", ip1), Ok(()));
}
