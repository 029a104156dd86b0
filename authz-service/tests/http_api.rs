//! The real service over HTTP on a free port with a temporary SQLite file: metadata, JWKS,
//! every grant, every client authentication method, every error code.
// Test code states its expectations bluntly; the no-panic rule is for service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_service::jwk::VerifyingKey;
use common::*;
use jwt_simple::prelude::*;
use serde_json::Value;

fn demo_key(server: &Server) -> Ed25519KeyPair {
    let pem = std::fs::read_to_string(server.data_dir.join("demo-jwt-client.pem")).unwrap();
    Ed25519KeyPair::from_pem(&pem).unwrap()
}

fn assertion(key: &Ed25519KeyPair, iss: &str, sub: &str, aud: &str, jti: &str) -> String {
    let claims = Claims::create(Duration::from_secs(120))
        .with_issuer(iss)
        .with_subject(sub)
        .with_audience(aud)
        .with_jwt_id(jti);
    key.sign(claims).unwrap()
}

/// Verify an access token against the JWKS the server publishes now.
async fn verify_with_jwks(server: &Server, token: &str) -> JWTClaims<Value> {
    let jwks: Value = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = header(token)["kid"].as_str().unwrap().to_string();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS {jwks}"));
    let key = VerifyingKey::from_jwk(jwk).unwrap();
    let opts = VerificationOptions {
        allowed_issuers: Some(HashSet::from([ISSUER.to_string()])),
        allowed_audiences: Some(HashSet::from(["wasmgate-api".to_string()])),
        required_signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    let c = key.verify(token, opts).unwrap();
    let value = claims(token);
    JWTClaims {
        issued_at: c.issued_at,
        expires_at: c.expires_at,
        invalid_before: c.invalid_before,
        issuer: c.issuer,
        subject: c.subject,
        audiences: c.audiences,
        jwt_id: c.jwt_id,
        nonce: c.nonce,
        custom: value,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_jwks_and_client_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    let health = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let meta: Value = http()
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], ISSUER);
    assert_eq!(meta["token_endpoint"], TOKEN_AUD);
    assert_eq!(meta["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    // What this issue's grants and client authentication methods add to the metadata (the
    // browser flows add more).
    let listed =
        |member: &str, value: &str| meta[member].as_array().unwrap().iter().any(|v| v == value);
    for g in ["client_credentials", JWT_BEARER] {
        assert!(listed("grant_types_supported", g), "{g}: {meta}");
    }
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        assert!(
            listed("token_endpoint_auth_methods_supported", m),
            "{m}: {meta}"
        );
    }
    for a in ["EdDSA", "ES256", "RS256"] {
        assert!(
            listed("token_endpoint_auth_signing_alg_values_supported", a),
            "{a}: {meta}"
        );
    }

    let jwks = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    assert_eq!(jwks.headers()["content-type"], "application/jwk-set+json");
    let etag = jwks.headers()["etag"].clone();
    let body: Value = jwks.json().await.unwrap();
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "private part published!");
    let again = http()
        .get(server.url("/.well-known/jwks.json"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // client_secret_basic
    let (status, headers, body) = token_request(
        &server,
        Some(("123", "secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "demo");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(header(token)["typ"], "at+jwt");
    let c = verify_with_jwks(&server, token).await;
    assert_eq!(c.subject.as_deref(), Some("123"));
    assert_eq!(c.custom["client_id"], "123");
    assert_eq!(c.custom["scope"], "demo");
    assert!(c.jwt_id.is_some());
    let lifetime = c.expires_at.unwrap().as_secs() - c.issued_at.unwrap().as_secs();
    assert_eq!(lifetime, 3600);

    // client_secret_post with an explicit scope
    let (status, _, body) = token_request(
        &server,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "123"),
            ("client_secret", "secret"),
            ("scope", "demo"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Secrets and tokens never reach the log.
    let log = server.log();
    assert!(log.contains("token issued"), "{log}");
    assert!(!log.contains(body["access_token"].as_str().unwrap()));
    assert!(!log.contains("secret\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_and_jwt_bearer_grant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let key = demo_key(&server);

    // private_key_jwt with client_credentials.
    let a = assertion(&key, "jwt-demo", "jwt-demo", TOKEN_AUD, "pkj-1");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    let (status, _, body) = token_request(&server, None, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["sub"],
        "jwt-demo"
    );
    // The same assertion again: replay.
    let (status, headers, body) = token_request(&server, None, &form).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(headers.contains_key("www-authenticate"));

    // JWT bearer grant for user bob, no separate client authentication.
    let a = assertion(&key, "jwt-demo", "bob", TOKEN_AUD, "bearer-1");
    let form = [("grant_type", JWT_BEARER), ("assertion", a.as_str())];
    let (status, _, body) = token_request(&server, None, &form).await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["client_id"], "jwt-demo");
    let (status, _, body) = token_request(&server, None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // JWT bearer grant together with private_key_jwt client authentication.
    let grant = assertion(&key, "jwt-demo", "bob", TOKEN_AUD, "bearer-2");
    let auth = assertion(&key, "jwt-demo", "jwt-demo", TOKEN_AUD, "pkj-2");
    let (status, _, body) = token_request(
        &server,
        None,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", grant.as_str()),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", auth.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // An assertion for the issuer URL as audience is accepted too (RFC 7523 §3 item 3).
    let a = assertion(&key, "jwt-demo", "bob", ISSUER, "bearer-3");
    let (status, _, body) = token_request(
        &server,
        None,
        &[("grant_type", JWT_BEARER), ("assertion", &a)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A key that isn't registered is refused.
    let stranger = Ed25519KeyPair::generate();
    let a = assertion(&stranger, "jwt-demo", "bob", TOKEN_AUD, "bearer-4");
    let (status, _, body) = token_request(
        &server,
        None,
        &[("grant_type", JWT_BEARER), ("assertion", &a)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_code_with_its_status_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let cc = ("grant_type", "client_credentials");

    let check = |(status, headers, body): (u16, reqwest::header::HeaderMap, Value),
                 want_status: u16,
                 want_error: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error"], want_error, "{body}");
        assert!(body["error_description"].is_string(), "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        if want_status == 401 {
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic realm="),
                "{headers:?}"
            );
        }
    };

    check(
        token_request(&server, Some(("123", "wrong")), &[cc]).await,
        401,
        "invalid_client",
    );
    check(
        token_request(
            &server,
            None,
            &[cc, ("client_id", "123"), ("client_secret", "wrong")],
        )
        .await,
        401,
        "invalid_client",
    );
    check(
        token_request(&server, None, &[cc]).await,
        401,
        "invalid_client",
    );
    check(
        token_request(&server, Some(("123", "secret")), &[("scope", "demo")]).await,
        400,
        "invalid_request",
    );
    check(
        token_request(&server, Some(("123", "secret")), &[cc, cc]).await,
        400,
        "invalid_request",
    );
    check(
        token_request(
            &server,
            Some(("123", "secret")),
            &[cc, ("client_id", "123"), ("client_secret", "secret")],
        )
        .await,
        400,
        "invalid_request",
    );
    check(
        token_request(
            &server,
            Some(("123", "secret")),
            &[("grant_type", "password")],
        )
        .await,
        400,
        "unsupported_grant_type",
    );
    check(
        token_request(
            &server,
            Some(("123", "secret")),
            &[cc, ("scope", "demo admin")],
        )
        .await,
        400,
        "invalid_scope",
    );
    // Client 123 did not register the JWT bearer grant.
    let a = assertion(&Ed25519KeyPair::generate(), "123", "bob", TOKEN_AUD, "x");
    check(
        token_request(
            &server,
            Some(("123", "secret")),
            &[("grant_type", JWT_BEARER), ("assertion", &a)],
        )
        .await,
        400,
        "unauthorized_client",
    );
    check(
        token_request(
            &server,
            None,
            &[("grant_type", JWT_BEARER), ("assertion", "e30.e30.sig")],
        )
        .await,
        400,
        "invalid_grant",
    );

    // Not a form.
    let resp = http()
        .post(server.url("/oauth2/token"))
        .basic_auth("123", Some("secret"))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // Too large a body.
    let huge = "a".repeat(200 * 1024);
    let resp = http()
        .post(server.url("/oauth2/token"))
        .basic_auth("123", Some("secret"))
        .form(&[cc, ("pad", huge.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // Unknown paths get problem+json.
    let resp = http().get(server.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Failures are logged with their reason, and the service still serves.
    assert!(server.log().contains("invalid_scope"));
    let (status, _, _) = token_request(&server, Some(("123", "secret")), &[cc]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_client_authentication_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authz.toml");
    std::fs::write(
        &config,
        "[security]\nauth_failure_limit = 3\nauth_failure_window_secs = 60\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    let cc = ("grant_type", "client_credentials");
    for _ in 0..3 {
        let (status, _, _) = token_request(&server, Some(("123", "guess")), &[cc]).await;
        assert_eq!(status, 401);
    }
    let (status, headers, body) = token_request(&server, Some(("123", "secret")), &[cc]).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // The address is blocked too, whatever client it claims to be.
    let (status, _, _) = token_request(&server, Some(("jwt-demo", "x")), &[cc]).await;
    assert_eq!(status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_jwt_scripts_as_cli_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url("/oauth2/token");
    for (mode, sub) in [("private-key-jwt", "jwt-demo"), ("jwt-bearer", "bob")] {
        let out = admin(dir.path(), &["token", mode, "--token-url", &url], &[]);
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!(c["sub"], sub, "{mode}");
        assert_eq!(c["client_id"], "jwt-demo", "{mode}");
    }
    // A subject the server doesn't know: the command reports the server's error and fails.
    let out = std::process::Command::new(binary())
        .args(["--issuer", ISSUER, "--data-dir"])
        .arg(dir.path())
        .args([
            "token",
            "jwt-bearer",
            "--subject",
            "mallory",
            "--token-url",
            &url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid_grant"));
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_variables_configure_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::start_with(
        &[],
        &[
            ("AUTHZ_LISTEN", "127.0.0.1:0"),
            ("AUTHZ_ISSUER", ISSUER),
            ("AUTHZ_DATA_DIR", data),
            ("AUTHZ_DEMO", "1"),
            ("AUTHZ_TOKEN_LIFETIME_SECS", "120"),
            ("AUTHZ_AUDIENCE", "other-api"),
            ("AUTHZ_KEY_ALGORITHM", "ES256"),
        ],
        dir.path(),
    );
    let (status, _, body) = token_request(
        &server,
        Some(("123", "secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 120);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["aud"], "other-api");
    assert_eq!(header(token)["alg"], "ES256");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_assertion_wins_once_even_when_sent_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let a = assertion(&demo_key(&server), "jwt-demo", "bob", TOKEN_AUD, "race-1");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = server.url("/oauth2/token");
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            http()
                .post(url)
                .form(&[("grant_type", JWT_BEARER), ("assertion", a.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400, 400, 400, 400, 400, 400, 400]);
}
