//! The compiled filter (`route_rewrite.wasm`, profile `wasm`) in the proxy-wasm harness host:
//! configuration at start-up, headers the filter sets and removes, local answers, logs, metrics.

// The harness runs on the host only.
#![cfg(not(target_arch = "wasm32"))]
// Helpers of these tests fail loudly, like the tests themselves (clippy only exempts #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use wasmgate_harness::{Action, Error, FilterModule, Host, LogLevel, filter_wasm};

/// Compiling the module once for all tests keeps them fast on two cores.
fn module() -> &'static FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = filter_wasm("route-rewrite").unwrap();
        FilterModule::from_file(path).unwrap()
    })
}

fn stack_config() -> String {
    json!({
        "rules": [
            "RewriteCond %{HTTP:x-tenant} =beta",
            "^/api/(.*)$ http://localhost:3003/api/$1 [P]",
            {"name": "api", "rule": "^/api/(.*)$ http://localhost:3002/api/$1 [P,QSA]"},
            "^/old/(.*)$ /new/$1 [R=301]",
            "^/admin - [F]",
            "^/legacy/ - [G]",
            "^/v1/(.*)$ /api/$1 [N]",
            "^/spin/(.*)$ /spin/$1 [N]"
        ],
        "upstreams": {"localhost:3002": "notes_api", "localhost:3003": "notes_beta"},
        "max_rule_applications": 5
    })
    .to_string()
}

fn headers<'a>(path: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost:8443"),
        (":path", path),
    ];
    all.extend_from_slice(extra);
    all
}

#[test]
fn proxy_rule_sets_path_authority_upstream_and_original_path() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let mut stream = vm.http_stream().unwrap();
    let action = stream
        .request_headers(&headers("/api/notes?limit=2", &[]), true)
        .unwrap();
    assert_eq!(action, Action::Continue);
    let request = stream.request();
    assert_eq!(request.header(":path"), Some("/api/notes?limit=2"));
    assert_eq!(request.header(":authority"), Some("localhost:3002"));
    assert_eq!(request.header("x-wasmgate-upstream"), Some("notes_api"));
    assert_eq!(
        request.header("x-wasmgate-original-path"),
        Some("/api/notes?limit=2")
    );
    // Hits are added up in the VM and reach the host on the root context's tick.
    stream.finish().unwrap();
    assert_eq!(host.counter("route_rewrite.rule.api.hits"), Some(0));
    assert_eq!(vm.tick_period(), Some(Duration::from_secs(1)));
    vm.tick().unwrap();
    assert_eq!(host.counter("route_rewrite.rule.api.hits"), Some(1));
    assert_eq!(host.counter("route_rewrite.rule.1.hits"), Some(0));
}

/// A client's copies of the headers only this filter writes are gone, and the filter's own are
/// there once: the cleared headers are added, not added beside the client's.
#[test]
fn a_rewrite_sends_its_own_headers_once_whatever_the_client_sent() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let mut stream = vm.http_stream().unwrap();
    let spoofed = [
        ("x-wasmgate-upstream", "authz"),
        ("X-Wasmgate-Upstream", "admin"),
        ("x-wasmgate-original-path", "/lies"),
    ];
    stream
        .request_headers(&headers("/api/notes", &spoofed), true)
        .unwrap();
    let request = stream.request();
    let all = |name: &str| -> Vec<&str> {
        request
            .headers
            .0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(all("x-wasmgate-upstream"), ["notes_api"]);
    assert_eq!(all("x-wasmgate-original-path"), ["/api/notes"]);
    assert_eq!(all(":path"), ["/api/notes"]);
}

#[test]
fn header_condition_switches_the_upstream() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let mut stream = vm.http_stream().unwrap();
    stream
        .request_headers(&headers("/api/notes", &[("x-tenant", "beta")]), true)
        .unwrap();
    assert_eq!(
        stream.request().header("x-wasmgate-upstream"),
        Some("notes_beta")
    );
    assert_eq!(
        stream.request().header(":authority"),
        Some("localhost:3003")
    );
    stream.finish().unwrap();
    vm.tick().unwrap();
    assert_eq!(host.counter("route_rewrite.rule.1.hits"), Some(1));
}

/// `preserve_host` keeps the client's `:authority` on a `[P]` rule, and `send_original_path`
/// off leaves `x-wasmgate-original-path` out, the client's own included; the cluster and the path
/// are the rule's as before. The shortcut (first rule) and the engine (a later rule) both.
#[test]
fn preserve_host_and_no_original_path_forward_only_path_and_cluster() {
    let host = Host::new(module());
    let mut config: serde_json::Value = serde_json::from_str(&stack_config()).unwrap();
    config["preserve_host"] = json!(true);
    config["send_original_path"] = json!(false);
    let mut vm = host.plugin(&config.to_string()).unwrap();
    let spoofed = [("x-wasmgate-original-path", "/lies")];
    for (path, extra, upstream) in [
        ("/api/notes?limit=2", &[][..], "notes_api"),
        ("/api/notes", &[("x-tenant", "beta")][..], "notes_beta"),
    ] {
        let mut stream = vm.http_stream().unwrap();
        let mut sent = headers(path, &spoofed);
        sent.extend_from_slice(extra);
        assert_eq!(
            stream.request_headers(&sent, true).unwrap(),
            Action::Continue
        );
        let request = stream.request();
        assert_eq!(request.header(":path"), Some(path));
        assert_eq!(
            request.header(":authority"),
            Some("localhost:8443"),
            "{path}"
        );
        assert_eq!(request.header("x-wasmgate-upstream"), Some(upstream));
        assert_eq!(request.header("x-wasmgate-original-path"), None, "{path}");
        stream.finish().unwrap();
    }
}

#[test]
fn client_cannot_pick_the_upstream_or_fake_the_original_path() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let mut stream = vm.http_stream().unwrap();
    let spoofed = [
        ("x-wasmgate-upstream", "authz"),
        ("x-wasmgate-original-path", "/lies"),
    ];
    let action = stream
        .request_headers(&headers("/", &spoofed), true)
        .unwrap();
    assert_eq!(action, Action::Continue);
    let request = stream.request();
    assert_eq!(request.header("x-wasmgate-upstream"), None);
    assert_eq!(request.header("x-wasmgate-original-path"), None);
    assert_eq!(request.header(":path"), Some("/"));
    assert_eq!(request.header(":authority"), Some("localhost:8443"));
}

#[test]
fn local_rewrite_with_next_changes_the_path_only() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let mut stream = vm.http_stream().unwrap();
    stream
        .request_headers(&headers("/v1/notes", &[]), true)
        .unwrap();
    // /v1/notes -> /api/notes, then [N] restarts and the api rule proxies it.
    assert_eq!(stream.request().header(":path"), Some("/api/notes"));
    assert_eq!(
        stream.request().header("x-wasmgate-upstream"),
        Some("notes_api")
    );
    assert_eq!(
        stream.request().header("x-wasmgate-original-path"),
        Some("/v1/notes")
    );
}

#[test]
fn redirect_forbidden_and_gone_are_answered_by_the_filter() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();

    let mut stream = vm.http_stream().unwrap();
    let action = stream
        .request_headers(&headers("/old/page?a=1", &[]), true)
        .unwrap();
    assert_eq!(action, Action::Pause);
    let answer = stream.local_response().unwrap();
    assert_eq!(answer.status, 301);
    assert_eq!(answer.header("location"), Some("/new/page?a=1"));
    drop(stream);

    let mut stream = vm.http_stream().unwrap();
    stream
        .request_headers(&headers("/admin", &[]), true)
        .unwrap();
    let answer = stream.local_response().unwrap();
    assert_eq!(answer.status, 403);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let body: serde_json::Value = serde_json::from_str(&answer.body_text()).unwrap();
    assert_eq!(body["status"], 403);
    drop(stream);

    let mut stream = vm.http_stream().unwrap();
    stream
        .request_headers(&headers("/legacy/x", &[]), true)
        .unwrap();
    assert_eq!(stream.local_response().unwrap().status, 410);
}

#[test]
fn loop_answers_500_and_logs_the_rule() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let mut stream = vm.http_stream().unwrap();
    let action = stream
        .request_headers(&headers("/spin/x", &[]), true)
        .unwrap();
    assert_eq!(action, Action::Pause);
    assert_eq!(stream.local_response().unwrap().status, 500);
    let errors = host.logs_at(LogLevel::Error);
    assert!(
        errors.iter().any(|l| l
            .starts_with("route-rewrite: rule rules[7] `^/spin/(.*)$ /spin/$1 [N]`")
            && l.contains("more than 5 times")),
        "{errors:?}"
    );
    // Nothing counted is lost when the plugin goes away before its next tick.
    stream.finish().unwrap();
    assert!(vm.shutdown().unwrap());
    assert_eq!(host.counter("route_rewrite.rule.7.hits"), Some(5));
}

#[test]
fn bad_configuration_is_refused_with_field_rule_and_reason() {
    let host = Host::new(module());
    let config = json!({"rules": ["^/x/(.*)$ http://elsewhere:81/$1 [P]"]}).to_string();
    match host.plugin(&config) {
        Err(Error::ConfigRefused(lines)) => {
            assert!(
                lines.iter().any(|(level, line)| *level == LogLevel::Error
                    && line.starts_with("route-rewrite: invalid configuration: field `rules[0]`: rule `^/x/(.*)$ http://elsewhere:81/$1 [P]`: ")
                    && line.contains("`elsewhere:81` is not mapped")),
                "{lines:?}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("configuration was accepted"),
    }
}

#[test]
fn the_stack_configuration_file_is_accepted() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../envoy/filters/route-rewrite.json"
    ))
    .unwrap()
    .replace("${PUBLIC_URL}", "https://localhost:8443");
    let host = Host::new(module());
    let mut vm = host.plugin(&text).unwrap();
    let mut stream = vm.http_stream().unwrap();
    stream
        .request_headers(&headers("/api/notes", &[]), true)
        .unwrap();
    assert_eq!(
        stream.request().header("x-wasmgate-upstream"),
        Some("notes_api")
    );
}

#[test]
fn without_configuration_every_request_passes_unchanged() {
    let host = Host::new(module());
    let mut vm = host.plugin("").unwrap();
    let mut stream = vm.http_stream().unwrap();
    let action = stream
        .request_headers(&headers("/api/notes", &[]), true)
        .unwrap();
    assert_eq!(action, Action::Continue);
    assert_eq!(stream.request().header(":path"), Some("/api/notes"));
    assert_eq!(stream.request().header("x-wasmgate-upstream"), None);
    assert!(host.logs_at(LogLevel::Warn).is_empty());
}
