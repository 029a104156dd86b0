//! The one-module chain end to end: the gateway's own stack with `chain.wasm` in place of the
//! three filters (`StackOptions::one_module`, `cargo xtask up --chain`), real Envoy with two
//! workers over TLS, real tokens from the authz-service.
//!
//! - Envoy runs one wasm filter, `wasmgate.chain`, and none of the three.
//! - bearer-auth's stage: 401 with the RFC 6750 challenge without a token; with one, the identity
//!   reaches the API and a client's spoofed identity does not.
//! - route-rewrite's stage: the `[P]` rule sends `/api/` to the notes API with its authority and
//!   the original path.
//! - rate-limit's stage: a limit of 5 per client holds exactly across both workers (it keys on
//!   the identity the first stage set), with its headers on each answer and a 429 after.
//! - The stages' counters reach Envoy under the filters' own names.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::StatusCode;
use serde_json::{Value, json};
use wasmgate_e2e::{Stack, StackOptions, client_credentials_token, stats_once, sum_stat};
use xtask::paths::root;

const LIMIT: u64 = 5;

/// The stack's own rate-limit config with a limit small enough to reach, over an hour so no token
/// comes back while the test runs.
fn rate_limit_config() -> String {
    let text = std::fs::read_to_string(root().join("envoy/filters/rate-limit.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["policies"][0]["limit"] = json!(LIMIT);
    config["policies"][0]["interval"] = json!("3600s");
    config.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_runs_on_the_one_module_chain() {
    let mut stack = Stack::start(
        StackOptions::for_test("chain")
            .concurrency(2)
            .one_module()
            .filter_config("rate-limit", rate_limit_config()),
    )
    .await
    .unwrap();

    envoy_runs_the_chain_alone(&stack).await;
    let token = client_credentials_token(&stack, "demo").await.unwrap();
    no_token_gets_the_challenge(&stack).await;
    a_request_passes_every_stage(&stack, &token).await;
    the_limit_holds_across_workers(&stack, &token).await;
    counters_keep_the_filters_names(&stack).await;

    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
    stack.stop();
}

async fn envoy_runs_the_chain_alone(stack: &Stack) {
    let dump = reqwest::get(stack.admin_url("/config_dump"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dump.contains("wasmgate.chain"), "no chain in the config");
    assert!(
        dump.contains("/chain.wasm"),
        "the chain's module is not loaded"
    );
    for alone in [
        "wasmgate.bearer_auth",
        "wasmgate.rate_limit",
        "wasmgate.route_rewrite",
    ] {
        assert!(!dump.contains(alone), "{alone} is loaded besides the chain");
    }
}

async fn no_token_gets_the_challenge(stack: &Stack) {
    let client = stack.https_client().unwrap();
    let response = client
        .get(stack.https_url("/api/notes"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
}

/// One request through the three stages: the first of the client's limit.
async fn a_request_passes_every_stage(stack: &Stack, token: &str) {
    let client = stack.https_client().unwrap();
    let response = client
        .get(stack.https_url("/api/notes?probe=chain"))
        .bearer_auth(token)
        .header("x-auth-client-id", "admin")
        .header("x-wasmgate-upstream", "authz")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (limit, remaining) = (LIMIT.to_string(), (LIMIT - 1).to_string());
    let expected = [
        // bearer-auth: the token's client, not the spoofed one.
        ("x-demo-received-auth-client-id", "123"),
        ("x-demo-received-auth-scope", "demo"),
        // route-rewrite: the [P] rule's target, whatever upstream the client asked for.
        ("x-demo-received-path", "/api/notes?probe=chain"),
        ("x-demo-received-host", "localhost:3002"),
        (
            "x-demo-received-wasmgate-original-path",
            "/api/notes?probe=chain",
        ),
        // rate-limit: keyed on the identity bearer-auth set, one of the limit used.
        ("x-ratelimit-limit", limit.as_str()),
        ("x-ratelimit-remaining", remaining.as_str()),
    ];
    for (name, value) in expected {
        assert_eq!(header(name).as_deref(), Some(value), "{name}");
    }
    assert!(
        header("ratelimit-policy")
            .unwrap()
            .starts_with("\"per-client\";q=5")
    );
    let notes: Value = response.json().await.unwrap();
    assert!(notes.is_array(), "{notes}");
}

async fn the_limit_holds_across_workers(stack: &Stack, token: &str) {
    // Twenty concurrent requests on separate connections, which Envoy spreads over its workers:
    // exactly what is left of the limit (one request used it already) passes.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = stack.https_client().unwrap();
        let url = stack.https_url("/api/notes");
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let response = client.get(url).bearer_auth(token).send().await.unwrap();
            let retry_after = response.headers().get("retry-after").is_some();
            (response.status(), retry_after)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let passed = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    let limited: Vec<_> = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(passed as u64, LIMIT - 1, "{outcomes:?}");
    assert_eq!(passed + limited.len(), outcomes.len(), "{outcomes:?}");
    assert!(
        limited.iter().all(|(_, retry_after)| *retry_after),
        "{outcomes:?}"
    );
}

/// The stages count under the filters' own names, as the three modules do.
async fn counters_keep_the_filters_names(stack: &Stack) {
    let expected_limited = 20 - (LIMIT - 1);
    let stats = stats_once(stack, "?filter=wasmcustom", |stats| {
        sum_stat(stats, "rate-limit.policy.per-client.limited") >= expected_limited
    })
    .await;
    assert_eq!(
        sum_stat(&stats, "rate-limit.policy.per-client.allowed"),
        LIMIT,
        "{stats}"
    );
    assert_eq!(
        sum_stat(&stats, "rate-limit.policy.per-client.limited"),
        expected_limited,
        "{stats}"
    );
    assert!(sum_stat(&stats, "bearer_auth.allowed") >= LIMIT, "{stats}");
    assert!(
        sum_stat(&stats, "route_rewrite.rule.notes_api.hits") >= LIMIT,
        "{stats}"
    );
}
