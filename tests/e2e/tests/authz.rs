//! The authz-service end to end, through the real Envoy and the bearer-auth filter: its tokens
//! (client_credentials, private_key_jwt, JWT bearer) open `/api/notes`; an expired one does not.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wasmgate_e2e::{Stack, StackOptions, client_credentials_token};
use xtask::paths::{bin_dir, root};

/// bearer-auth's config from `envoy/filters/bearer-auth.json` with no clock skew, so a token
/// that expired is refused at once. (If that file does not configure the filter yet, a minimal
/// config that checks our tokens against our JWKS stands in.)
fn bearer_auth_config() -> String {
    let text = std::fs::read_to_string(root().join("envoy/filters/bearer-auth.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    if config.get("issuer").is_none() {
        config = json!({
            "issuer": "${PUBLIC_URL}",
            "audiences": ["wasmgate-api"],
            "jwks": {"remote": {"cluster": "authz", "path": "/.well-known/jwks.json"}},
            "rules": [{"match": {"path_prefix": "/api/"}, "require": {"scopes": ["demo"]}}],
            "default": "anonymous"
        });
    }
    config["clock_skew_seconds"] = json!(0);
    config.to_string()
}

/// Run the authz-service CLI against the stack's data directory.
fn authz_cli(stack: &Stack, args: &[&str]) -> String {
    let out = Command::new(bin_dir().join("authz-service"))
        .args(["--issuer", &stack.endpoints.public_url, "--data-dir"])
        .arg(stack.run_dir.join("authz-data"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "authz-service {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn get_notes(stack: &Stack, token: &str) -> reqwest::Response {
    stack
        .https_client()
        .unwrap()
        .get(stack.https_url("/api/notes"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn authz_tokens_through_the_gateway() {
    let stack = Stack::start(
        StackOptions::for_test("authz").filter_config("bearer-auth", bearer_auth_config()),
    )
    .await
    .unwrap();
    let client = stack.https_client().unwrap();

    // Metadata and keys are reachable through the gateway, under the public issuer.
    let meta: Value = client
        .get(stack.https_url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], stack.endpoints.public_url.as_str());
    assert_eq!(meta["token_endpoint"], stack.https_url("/oauth2/token"));
    let jwks = client
        .get(stack.https_url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);

    // client_credentials (client_secret_basic) through the gateway opens /api/notes.
    let token = client_credentials_token(&stack, "demo").await.unwrap();
    let response = get_notes(&stack, &token).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", stack.log("envoy"));

    // The seed's JWT scripts, against the gateway with the dev CA.
    let ca = stack.certs.ca_cert.to_str().unwrap().to_owned();
    let url = stack.https_url("/oauth2/token");
    for mode in ["private-key-jwt", "jwt-bearer"] {
        let out = authz_cli(
            &stack,
            &["token", mode, "--token-url", &url, "--ca-cert", &ca],
        );
        let body: Value = serde_json::from_str(&out).unwrap();
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            get_notes(&stack, token).await.status(),
            StatusCode::OK,
            "{mode}"
        );
    }

    // A client whose tokens live one second: fine at first, refused once expired.
    let out = authz_cli(
        &stack,
        &[
            "client",
            "add",
            "short-lived",
            "--scope",
            "demo",
            "--token-lifetime-secs",
            "1",
        ],
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    let response = client
        .post(stack.https_url("/oauth2/token"))
        .basic_auth("short-lived", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 1);
    let expiring = body["access_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = get_notes(&stack, &expiring).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
        "{challenge}"
    );
    // The long-lived token still works: only the expired one was refused.
    assert_eq!(get_notes(&stack, &token).await.status(), StatusCode::OK);
}
