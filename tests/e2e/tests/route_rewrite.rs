//! route-rewrite end to end: the real Envoy 1.40 with the compiled filter, real TLS, the demo
//! notes API and demo client behind it. The stack runs the rules of envoy/filters/route-rewrite.json
//! plus a few test rules, one for each behaviour the issue lists; the demo API echoes the path and
//! host it received, Envoy's access log names the cluster each request went to.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use wasmgate_e2e::{Stack, StackOptions, client_credentials_token, stats_once};

/// The stack's own configuration, with test rules in front of its rules (so that the canary
/// condition is tried before the stack's catch-all `/api/` rule) and one more upstream.
fn test_config() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../envoy/filters/route-rewrite.json"
    );
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let stack_rules = config["rules"].as_array().cloned().unwrap();
    let mut rules = vec![
        // A path the filter leaves alone on the /api/ route: the route then has no upstream
        // unless a client could smuggle one in.
        json!("^/api/raw/ - [L]"),
        // A condition on a header switches the upstream (same path, other cluster).
        json!("RewriteCond %{HTTP:x-canary} =client [NC]"),
        json!("^/api/(.*)$ http://client.internal/api/$1 [P]"),
        // QSA keeps the client's query after the substitution's.
        json!("^/api/v0/(.*)$ http://localhost:3002/api/$1?from=v0 [P,QSA]"),
        // NC: the pattern ignores case.
        json!("^/any-case/(.*)$ http://localhost:3002/api/$1 [P,NC]"),
        json!("^/api-docs/(.*)$ /docs/$1 [R=301]"),
        json!("^/moved$ https://%{HTTP_HOST}/new-home [R=308]"),
        json!("^/admin(/|$) - [F]"),
        json!("^/legacy/ - [G]"),
    ];
    rules.extend(stack_rules);
    config["rules"] = Value::Array(rules);
    config["upstreams"]["client.internal"] = json!("demo_client");
    config.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn route_rewrite_through_real_envoy() {
    let mut stack = Stack::start(
        StackOptions::for_test("route_rewrite")
            .concurrency(2)
            .filter_config("route-rewrite", test_config()),
    )
    .await
    .unwrap();
    let api = Api::for_stack(&stack).await;

    proxy_rule_reaches_the_notes_api_on_its_cluster(&api).await;
    redirect_301_has_the_right_location(&api).await;
    forbidden_and_gone(&api).await;
    qsa_keeps_the_query(&api).await;
    nocase_matches_any_case(&api).await;
    header_condition_switches_the_upstream(&api).await;
    client_cannot_choose_the_upstream(&api).await;
    hits_are_counted_per_rule(&api).await;
    clusters_in_the_access_log(&api).await;

    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
    stack.stop();
}

/// With `preserve_host` and `send_original_path` off, a `[P]` request reaches the notes API
/// through real Envoy with the Host the client used and without `x-wasmgate-original-path`, on the
/// cluster the target's authority maps to.
#[tokio::test(flavor = "multi_thread")]
async fn preserve_host_through_real_envoy() {
    let mut config: Value = serde_json::from_str(&test_config()).unwrap();
    config["preserve_host"] = json!(true);
    config["send_original_path"] = json!(false);
    let mut stack = Stack::start(
        StackOptions::for_test("route_rewrite_preserve_host")
            .filter_config("route-rewrite", config.to_string()),
    )
    .await
    .unwrap();
    let api = Api::for_stack(&stack).await;
    let response = api.send("/api/notes?probe=host").await;
    assert_eq!(response.status(), StatusCode::OK);
    let client_host = stack.https_url("").replace("https://", "");
    assert_eq!(
        header(&response, "x-demo-received-host"),
        Some(client_host.as_str())
    );
    assert_eq!(
        header(&response, "x-demo-received-path"),
        Some("/api/notes?probe=host")
    );
    assert_eq!(
        header(&response, "x-demo-received-wasmgate-original-path"),
        None
    );
    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
    stack.stop();
}

struct Api<'a> {
    stack: &'a Stack,
    token: Option<String>,
}

impl<'a> Api<'a> {
    /// The API of `stack` with the demo client's token. The API needs a token once bearer-auth
    /// enforces it; before that, requests go without.
    async fn for_stack(stack: &'a Stack) -> Api<'a> {
        let token = client_credentials_token(stack, "demo").await.ok();
        Api { stack, token }
    }

    fn get(&self, path: &str) -> RequestBuilder {
        let request = self
            .stack
            .https_client()
            .unwrap()
            .get(self.stack.https_url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, path: &str) -> Response {
        self.get(path).send().await.unwrap()
    }

    /// The access-log lines of the requests whose original paths are `paths` (each unique), in
    /// that order. Envoy flushes its access log every few seconds, so the tests collect what
    /// they want to check and wait once.
    async fn access_log_lines(&self, paths: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.stack.log("envoy");
            let found: Vec<Option<String>> = paths
                .iter()
                .map(|path| {
                    let needle = format!(" {path} ");
                    log.lines()
                        .find(|l| l.starts_with("[access]") && l.contains(&needle))
                        .map(str::to_owned)
                })
                .collect();
            if found.iter().all(Option::is_some) {
                return found.into_iter().flatten().collect();
            }
            assert!(
                Instant::now() < deadline,
                "no access log line for some of {paths:?} in:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn proxy_rule_reaches_the_notes_api_on_its_cluster(api: &Api<'_>) {
    let response = api.send("/api/notes?probe=seed").await;
    assert_eq!(response.status(), StatusCode::OK);
    // The demo API echoes what reached it: the path, the authority of the [P] target, the original path.
    assert_eq!(
        header(&response, "x-demo-received-path"),
        Some("/api/notes?probe=seed")
    );
    assert_eq!(
        header(&response, "x-demo-received-host"),
        Some("localhost:3002")
    );
    assert_eq!(
        header(&response, "x-demo-received-wasmgate-original-path"),
        Some("/api/notes?probe=seed")
    );
    let notes: Value = response.json().await.unwrap();
    assert!(notes.is_array(), "{notes}");
}

async fn redirect_301_has_the_right_location(api: &Api<'_>) {
    let response = api.send("/api-docs/intro?lang=en").await;
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&response, "location"), Some("/docs/intro?lang=en"));

    let response = api.send("/moved").await;
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    let expected = api.stack.https_url("/new-home");
    assert_eq!(header(&response, "location"), Some(expected.as_str()));
}

async fn forbidden_and_gone(api: &Api<'_>) {
    for (path, status, title) in [
        ("/admin/users", StatusCode::FORBIDDEN, "Forbidden"),
        ("/legacy/page", StatusCode::GONE, "Gone"),
    ] {
        let response = api.send(path).await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], status.as_u16());
        assert_eq!(body["title"], title);
    }
}

async fn qsa_keeps_the_query(api: &Api<'_>) {
    let response = api.send("/api/v0/notes?limit=1&probe=qsa").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-demo-received-path"),
        Some("/api/notes?from=v0&limit=1&probe=qsa")
    );
}

async fn nocase_matches_any_case(api: &Api<'_>) {
    // Before the rewrite `/ANY-Case/…` matches only the demo client's catch-all route; after it,
    // Envoy picks the route again and the request reaches the notes API.
    let response = api.send("/ANY-Case/notes?probe=nc").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-demo-received-path"),
        Some("/api/notes?probe=nc")
    );
}

async fn header_condition_switches_the_upstream(api: &Api<'_>) {
    let response = api
        .get("/api/notes?probe=canary")
        .header("x-canary", "Client")
        .send()
        .await
        .unwrap();
    // Not the notes API (which would echo the path it got)...
    assert_eq!(header(&response, "x-demo-received-path"), None);
    // ...but the demo client's cluster with the same path: see `clusters_in_the_access_log`.

    let response = api
        .get("/api/notes?probe=no-canary")
        .header("x-canary", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "x-demo-received-path"),
        Some("/api/notes?probe=no-canary")
    );
}

async fn client_cannot_choose_the_upstream(api: &Api<'_>) {
    let response = api
        .get("/api/raw/healthz?probe=spoof")
        .header("x-wasmgate-upstream", "notes_api")
        .send()
        .await
        .unwrap();
    assert!(
        !response.status().is_success(),
        "a client-chosen cluster was used: {}",
        response.status()
    );
}

/// Which cluster Envoy sent each request to, and with which path, from its access log.
async fn clusters_in_the_access_log(api: &Api<'_>) {
    let lines = api
        .access_log_lines(&[
            "/api/notes?probe=seed",
            "/ANY-Case/notes?probe=nc",
            "/api/notes?probe=canary",
            "/api/notes?probe=no-canary",
            "/api/raw/healthz?probe=spoof",
        ])
        .await;
    let expected = [
        "upstream=notes_api path=/api/notes?probe=seed ",
        "upstream=notes_api path=/api/notes?probe=nc ",
        "upstream=demo_client path=/api/notes?probe=canary ",
        "upstream=notes_api path=/api/notes?probe=no-canary ",
        // The client's x-wasmgate-upstream was removed: the /api/ route found no cluster.
        "upstream=- path=/api/raw/healthz?probe=spoof ",
    ];
    for (line, part) in lines.iter().zip(expected) {
        assert!(line.contains(part), "`{part}` missing from: {line}");
    }
}

async fn hits_are_counted_per_rule(api: &Api<'_>) {
    // Each VM adds its hits up and hands them to Envoy on its one-second tick: wait for it.
    let stats = stats_once(api.stack, "?filter=route_rewrite", |stats| {
        ["7", "8", "notes_api"]
            .iter()
            .all(|name| rule_hits(stats, name) > 0)
    })
    .await;
    let counter = |name: &str| rule_hits(&stats, name);
    // With two workers each VM defines the counters; Envoy adds them up under one name.
    assert_eq!(counter("7"), 1, "the F rule (rules[7]) once:\n{stats}");
    assert_eq!(counter("8"), 1, "the G rule (rules[8]) once:\n{stats}");
    assert!(
        counter("notes_api") >= 2,
        "the stack's /api/ rule:\n{stats}"
    );
}

/// A rule's hit counter in Envoy's stats text (0 if it is not there).
fn rule_hits(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("wasmcustom.route_rewrite.rule.{name}.hits: ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}
