//! The compiled filter (`bearer_auth.wasm`) in the wasmtime proxy-wasm host: configuration,
//! the JWKS callout and shared data, paused requests, key rotation, RFC 6750 answers, metrics,
//! and a corpus of malformed input. Tokens are signed with the harness's `TokenSigner`.
//!
//! Set `WASMGATE_WASM_DIR` to a directory holding `bearer_auth.wasm` to test a prebuilt file;
//! otherwise the harness builds it.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;
use std::time::Duration;

use jwt_simple::prelude::*;
use serde_json::{Value, json};
use wasmgate_harness::{
    Action, CallResponse, CasRules, FilterModule, Host, LogLevel, TokenSigner, Vm, filter_wasm,
};

static MODULE: LazyLock<FilterModule> =
    LazyLock::new(|| FilterModule::from_file(filter_wasm("bearer-auth").unwrap()).unwrap());

const ISSUER: &str = "https://localhost:8443";
const AUDIENCE: &str = "wasmgate-api";

/// A good token from `signer`, issued at the host's `now`, valid five minutes.
fn token(signer: &TokenSigner, host: &Host, scope: &str) -> String {
    sign(signer, claims(host, scope))
}

/// An access token with exactly `claims`.
fn sign(signer: &TokenSigner, claims: Value) -> String {
    signer.access_token(claims).unwrap()
}

fn claims(host: &Host, scope: &str) -> Value {
    let now = host.clock().unix_seconds();
    json!({"iss": ISSUER, "sub": "bob", "aud": AUDIENCE, "client_id": "123", "scope": scope,
           "iat": now, "exp": now + 300, "jti": "j"})
}

fn jwks(signers: &[&TokenSigner]) -> String {
    wasmgate_harness::jwks(signers).unwrap()
}

fn config(extra: &str) -> String {
    format!(
        r#"{{"issuer": "{ISSUER}", "audiences": ["{AUDIENCE}"], "required_typ": "at+jwt",
            "jwks": {{"remote": {{"cluster": "authz", "path": "/.well-known/jwks.json",
                                 "authority": "authz.internal", "refresh_interval_seconds": 300,
                                 "unknown_kid_min_interval_seconds": 30, "retry_interval_seconds": 2}}}},
            "rules": [
              {{"match": {{"path_prefix": "/api/"}}, "require": {{"scopes": ["demo"]}}}},
              {{"match": {{"path_prefix": "/protected"}}, "require": {{"scopes": ["demo"]}}}},
              {{"match": {{"path_prefix": "/me"}}, "require": "token"}},
              {{"match": {{"path_prefix": "/oauth2/"}}, "require": "anonymous"}}
            ], "default": "anonymous"{extra}}}"#
    )
}

fn get<'a>(path: &'a str, auth: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "localhost:8443"),
        (":scheme", "https"),
    ];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    h
}

/// Answers every pending JWKS callout of `vm` with `status` and `body`; returns how many.
fn answer_jwks(vm: &mut Vm, status: u16, body: &str) -> usize {
    let calls = vm.callouts();
    for c in &calls {
        assert_eq!(c.cluster, "authz");
        assert_eq!(c.header(":path"), Some("/.well-known/jwks.json"));
        assert_eq!(c.header(":authority"), Some("authz.internal"));
        assert_eq!(c.header(":method"), Some("GET"));
        vm.respond(
            c.token,
            CallResponse::new(status).body(body.as_bytes().to_vec()),
        )
        .unwrap();
    }
    calls.len()
}

/// A configured VM whose first fetch got `doc`.
fn ready(host: &Host, doc: &str) -> Vm {
    let mut vm = host.plugin(&config("")).unwrap();
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, 200, doc), 1, "one fetch at start");
    vm
}

struct Answer {
    action: Action,
    status: Option<u32>,
    www: Option<String>,
    body: String,
    upstream: Vec<(String, String)>,
}

fn send(vm: &mut Vm, headers: &[(&str, &str)]) -> Answer {
    let mut s = vm.http_stream().unwrap();
    let action = s.request_headers(headers, true).unwrap();
    let local = s.local_response();
    Answer {
        action,
        status: local.as_ref().map(|l| l.status),
        www: local
            .as_ref()
            .and_then(|l| l.header("www-authenticate").map(String::from)),
        body: local.as_ref().map(|l| l.body_text()).unwrap_or_default(),
        upstream: s.request().headers.0,
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.upstream
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A claim header outside `x-auth-` is the filter's as much as the prefixed ones: a client's
/// copy never reaches the upstream, whether the token carries the claim or not.
#[test]
fn claim_headers_are_never_the_clients() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = host
        .plugin(&config(
            r#", "claim_headers": [{"claim": "groups", "header": "x-groups"},
                                  {"claim": "jti", "header": "x-auth-token-id"}]"#,
        ))
        .unwrap();
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, 200, &jwks(&[&s])), 1);
    let count = |a: &Answer, name: &str| {
        a.upstream
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };

    // The token has no `groups`: the client's two copies go, and none is written.
    let without = format!("Bearer {}", token(&s, &host, "demo"));
    let mut h = get("/api/notes", Some(&without));
    h.extend([("x-groups", "admin"), ("X-Groups", "root")]);
    let a = send(&mut vm, &h);
    assert_eq!(a.action, Action::Continue);
    assert_eq!(count(&a, "x-groups"), 0, "{:?}", a.upstream);
    assert_eq!(header(&a, "x-auth-token-id"), Some("j"));

    // The token has them: exactly the token's value, once.
    let mut c = claims(&host, "demo");
    c["groups"] = json!(["staff", "ops"]);
    let with = format!("Bearer {}", sign(&s, c));
    let mut h = get("/api/notes", Some(&with));
    h.extend([("x-groups", "admin"), ("x-auth-token-id", "forged")]);
    let a = send(&mut vm, &h);
    assert_eq!(header(&a, "x-groups"), Some("staff ops"));
    assert_eq!(
        (count(&a, "x-groups"), count(&a, "x-auth-token-id")),
        (1, 1)
    );
    assert_eq!(header(&a, "x-auth-token-id"), Some("j"));

    // An anonymous route: the copy goes too.
    let mut h = get("/oauth2/token", None);
    h.push(("x-groups", "admin"));
    let a = send(&mut vm, &h);
    assert_eq!(a.action, Action::Continue);
    assert_eq!(count(&a, "x-groups"), 0);
}

#[test]
fn a_bad_configuration_is_refused_and_names_the_field() {
    let host = Host::new(&MODULE);
    let mut vm = host.start_vm().unwrap();
    assert!(!vm.configure(&config("").replace(ISSUER, "")).unwrap());
    assert!(
        !vm.configure(&config("").replace(r#"{"path_prefix": "/api/"}"#, r#"{"path_regex": "("}"#))
            .unwrap()
    );
    assert!(
        !vm.configure(r#"{"issuer": "x", "audiences": ["a"]}"#)
            .unwrap()
    );
    let errors = host.logs_at(LogLevel::Error);
    assert!(
        errors.iter().any(|l| l
            .starts_with("bearer-auth: invalid configuration: field `issuer`: must not be empty")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("field `rules[0].match.path_regex`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|l| l.contains("missing field `jwks`")),
        "{errors:?}"
    );
}

#[test]
fn rfc6750_answers_and_identity_headers() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = ready(&host, &jwks(&[&s]));
    let demo = format!("Bearer {}", token(&s, &host, "demo"));
    let other = format!("Bearer {}", token(&s, &host, "other"));

    // Valid token: through, identity set, spoofed x-auth-* gone, Authorization forwarded.
    let mut h = get("/api/notes", Some(&demo));
    h.push(("x-auth-client-id", "admin"));
    h.push(("X-Auth-Role", "root"));
    let a = send(&mut vm, &h);
    assert_eq!(a.action, Action::Continue);
    assert_eq!(header(&a, "x-auth-subject"), Some("bob"));
    assert_eq!(header(&a, "x-auth-client-id"), Some("123"));
    assert_eq!(header(&a, "x-auth-scope"), Some("demo"));
    assert_eq!(header(&a, "x-auth-role"), None);
    assert!(header(&a, "authorization").is_some());
    assert_eq!(
        a.upstream
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-auth-client-id"))
            .count(),
        1
    );

    // No token: 401, challenge without error code.
    let a = send(&mut vm, &get("/api/notes", None));
    assert_eq!(
        (a.status, a.www.as_deref()),
        (Some(401), Some(r#"Bearer realm="wasmgate""#))
    );
    // Another scheme counts as no token.
    let a = send(&mut vm, &get("/me", Some("Basic MTIzOnNlY3JldA==")));
    assert_eq!(
        (a.status, a.www.as_deref()),
        (Some(401), Some(r#"Bearer realm="wasmgate""#))
    );
    // Malformed header: 400 invalid_request.
    let a = send(&mut vm, &get("/me", Some("Bearer a b")));
    assert_eq!(a.status, Some(400));
    assert!(a.www.unwrap().contains(r#"error="invalid_request""#));
    // Wrong scope: 403 with the scope needed.
    let a = send(&mut vm, &get("/protected", Some(&other)));
    assert_eq!(a.status, Some(403));
    assert_eq!(
        a.www.as_deref(),
        Some(
            r#"Bearer realm="wasmgate", error="insufficient_scope", error_description="the access token lacks a required scope", scope="demo""#
        )
    );
    // /me takes any valid token.
    assert_eq!(
        send(&mut vm, &get("/me", Some(&other))).action,
        Action::Continue
    );
    // Anonymous route: untouched, Basic credentials kept for the token endpoint, spoof removed.
    let mut h = get("/oauth2/token", Some("Basic MTIzOnNlY3JldA=="));
    h.push(("x-auth-subject", "bob"));
    let a = send(&mut vm, &h);
    assert_eq!(a.action, Action::Continue);
    assert_eq!(header(&a, "authorization"), Some("Basic MTIzOnNlY3JldA=="));
    assert_eq!(header(&a, "x-auth-subject"), None);

    // Invalid tokens: 401 invalid_token with the reason, JSON body with the same error.
    let mut c = claims(&host, "demo");
    c["aud"] = json!("someone-else");
    let a = send(
        &mut vm,
        &get("/me", Some(&format!("Bearer {}", sign(&s, c)))),
    );
    assert_eq!(a.status, Some(401));
    assert!(a.www.as_deref().unwrap().contains(
        r#"error="invalid_token", error_description="the token is not meant for this audience""#
    ));
    let body: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(body["error"], "invalid_token");
    let mut c = claims(&host, "demo");
    c["iss"] = json!("https://evil.example");
    let a = send(
        &mut vm,
        &get("/me", Some(&format!("Bearer {}", sign(&s, c)))),
    );
    assert!(a.www.unwrap().contains("untrusted issuer"));

    // Counts are added up in the VM and reach the host on the root context's tick.
    assert_eq!(host.counter("bearer_auth.allowed"), Some(0));
    assert_eq!(vm.tick_period(), Some(Duration::from_secs(1)));
    vm.tick().unwrap();
    assert_eq!(host.counter("bearer_auth.allowed"), Some(2));
    assert_eq!(host.counter("bearer_auth.allowed_anonymous"), Some(1));
    assert_eq!(host.counter("bearer_auth.denied.missing_token"), Some(2));
    assert_eq!(host.counter("bearer_auth.denied.invalid_request"), Some(1));
    assert_eq!(
        host.counter("bearer_auth.denied.insufficient_scope"),
        Some(1)
    );
    assert_eq!(host.counter("bearer_auth.denied.wrong_audience"), Some(1));
    assert_eq!(host.counter("bearer_auth.jwks_refresh.ok"), Some(1));
    let denials = host.logs_at(LogLevel::Info);
    assert!(
        denials.iter().any(|l| l
            .contains("401 wrong_audience: the token is not meant for this audience (GET /me)")),
        "{denials:?}"
    );
}

#[test]
fn the_token_never_appears_in_answers_or_logs() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = ready(&host, &jwks(&[&s]));
    let t = token(&s, &host, "other");
    host.clock().advance(Duration::from_secs(3600));
    let a = send(&mut vm, &get("/api/notes", Some(&format!("Bearer {t}"))));
    assert_eq!(a.status, Some(401));
    assert!(a.www.unwrap().contains("the token has expired"));
    let sig = t.rsplit('.').next().unwrap();
    assert!(!a.body.contains(sig));
    assert!(host.logs().iter().all(|l| !l.message.contains(sig)));
}

#[test]
fn cache_hits_after_the_first_verification() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = ready(&host, &jwks(&[&s]));
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    for _ in 0..5 {
        assert_eq!(
            send(&mut vm, &get("/me", Some(&auth))).action,
            Action::Continue
        );
    }
    // No tick came since the requests: what the VM counted reaches the host when the plugin
    // goes away (Envoy deletes the root context on shutdown and on a config change).
    assert_eq!(host.counter("bearer_auth.cache.hit"), Some(0));
    assert!(vm.shutdown().unwrap());
    assert_eq!(host.counter("bearer_auth.cache.miss"), Some(1));
    assert_eq!(host.counter("bearer_auth.cache.hit"), Some(4));
}

/// Rules on a host or on methods apply by the request's `:authority` (port or not, in any case)
/// and `:method`: the filter reads those only for a configuration that has such rules, and then
/// on every request.
#[test]
fn rules_on_the_host_and_the_method_apply_by_them() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let config = config("").replacen(
        r#""rules": ["#,
        r#""rules": [{"match": {"host": "admin.example.com"}, "require": "token"},
                     {"match": {"methods": ["DELETE"]}, "require": "token"},"#,
        1,
    );
    let mut vm = host.plugin(&config).unwrap();
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, 200, &jwks(&[&s])), 1);
    fn on<'a>(
        method: &'a str,
        authority: &'a str,
        auth: Option<&'a str>,
    ) -> Vec<(&'a str, &'a str)> {
        let mut h = get("/public", auth);
        h.retain(|(n, _)| *n != ":authority" && *n != ":method");
        h.push((":method", method));
        h.push((":authority", authority));
        h
    }

    // Elsewhere the default (anonymous) applies; on the admin host or for a DELETE a token is
    // needed.
    let a = send(&mut vm, &on("GET", "localhost:8443", None));
    assert_eq!(a.action, Action::Continue);
    for admin in ["admin.example.com", "Admin.Example.COM:8443"] {
        let a = send(&mut vm, &on("GET", admin, None));
        assert_eq!(a.status, Some(401), "{admin}");
    }
    let a = send(&mut vm, &on("DELETE", "localhost:8443", None));
    assert_eq!(a.status, Some(401));
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("(DELETE /public)"))
    );
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    for (method, authority) in [("GET", "admin.example.com:8443"), ("DELETE", "localhost")] {
        let a = send(&mut vm, &on(method, authority, Some(&auth)));
        assert_eq!(a.action, Action::Continue, "{method} {authority}");
        assert_eq!(header(&a, "x-auth-subject"), Some("bob"));
    }
}

#[test]
fn clock_skew_edges_with_the_host_clock() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = ready(&host, &jwks(&[&s]));
    let now = host.clock().unix_seconds();
    let mut c = claims(&host, "demo");
    c["nbf"] = json!(now + 100);
    let future = format!("Bearer {}", sign(&s, c));
    // nbf 100 s ahead, skew 60: refused now, accepted from 40 s on.
    assert!(
        send(&mut vm, &get("/me", Some(&future)))
            .www
            .unwrap()
            .contains("not valid yet")
    );
    host.clock().advance(Duration::from_secs(40));
    assert_eq!(
        send(&mut vm, &get("/me", Some(&future))).action,
        Action::Continue
    );
    // exp = issue + 300: accepted at exp + 60, refused at exp + 61 (the cache ends at exp).
    let mut c = claims(&host, "demo");
    let exp = c["exp"].as_u64().unwrap();
    c["jti"] = json!("other");
    let t = format!("Bearer {}", sign(&s, c));
    assert_eq!(
        send(&mut vm, &get("/me", Some(&t))).action,
        Action::Continue
    );
    let to = |host: &Host, secs: u64| {
        let now = host.clock().unix_seconds();
        host.clock().advance(Duration::from_secs(secs - now));
    };
    to(&host, exp + 60);
    assert_eq!(
        send(&mut vm, &get("/me", Some(&t))).action,
        Action::Continue
    );
    to(&host, exp + 61);
    assert!(
        send(&mut vm, &get("/me", Some(&t)))
            .www
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn requests_wait_for_the_first_key_set_instead_of_401() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = host.plugin(&config("")).unwrap();
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    // A request before the first tick: paused, not refused.
    let mut stream = vm.http_stream().unwrap();
    assert_eq!(
        stream
            .request_headers(&get("/api/notes", Some(&auth)), true)
            .unwrap(),
        Action::Pause
    );
    assert!(stream.local_response().is_none());
    let id = stream.id();
    std::mem::forget(stream);
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, 200, &jwks(&[&s])), 1);
    let stream = vm.stream(id).unwrap();
    assert!(stream.request_resumed(), "resumed once the keys arrived");
    assert!(stream.local_response().is_none());
    assert_eq!(stream.request().header("x-auth-client-id"), Some("123"));
}

#[test]
fn no_keys_at_all_gives_503_with_retry_after() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = host.plugin(&config("")).unwrap();
    vm.tick().unwrap();
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    let mut stream = vm.http_stream().unwrap();
    assert_eq!(
        stream
            .request_headers(&get("/me", Some(&auth)), true)
            .unwrap(),
        Action::Pause
    );
    let id = stream.id();
    std::mem::forget(stream);
    assert_eq!(answer_jwks(&mut vm, 500, "oops"), 1);
    let stream = vm.stream(id).unwrap();
    let local = stream
        .local_response()
        .expect("answered once the fetch failed");
    assert_eq!(local.status, 503);
    assert!(
        local
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)
    );
    assert!(!stream.request_resumed());
    drop(stream);
    // Within the retry delay no new fetch starts: the next request gets 503 at once.
    let a = send(&mut vm, &get("/me", Some(&auth)));
    assert_eq!(a.status, Some(503));
    assert!(vm.callouts().is_empty());
    assert_eq!(host.counter("bearer_auth.jwks_refresh.failed"), Some(1));
    assert!(
        host.logs_at(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("JWKS refresh failed") && l.contains("status 500"))
    );
}

#[test]
fn key_rotation_a_new_kid_triggers_one_refetch_and_is_accepted() {
    let host = Host::new(&MODULE);
    let old = TokenSigner::new("k1");
    let new = TokenSigner::new("k2");
    let mut vm = ready(&host, &jwks(&[&old]));
    let auth = format!("Bearer {}", token(&new, &host, "demo"));
    let mut stream = vm.http_stream().unwrap();
    assert_eq!(
        stream
            .request_headers(&get("/api/notes", Some(&auth)), true)
            .unwrap(),
        Action::Pause
    );
    let id = stream.id();
    std::mem::forget(stream);
    vm.tick().unwrap();
    assert_eq!(
        answer_jwks(&mut vm, 200, &jwks(&[&old, &new])),
        1,
        "exactly one refetch"
    );
    let stream = vm.stream(id).unwrap();
    assert!(stream.request_resumed());
    assert_eq!(stream.request().header("x-auth-subject"), Some("bob"));
    drop(stream);
    // Both keys now work without any further fetch.
    assert_eq!(
        send(
            &mut vm,
            &get(
                "/me",
                Some(&format!("Bearer {}", token(&old, &host, "demo")))
            )
        )
        .action,
        Action::Continue
    );
    vm.tick().unwrap();
    assert!(vm.callouts().is_empty());
}

#[test]
fn random_kids_cause_at_most_one_fetch_per_interval() {
    let host = Host::new(&MODULE);
    let good = TokenSigner::new("k1");
    let mut vm = ready(&host, &jwks(&[&good]));
    let mut fetches = 0;
    let mut refused = 0;
    let mut paused = Vec::new();
    for i in 0..100 {
        let auth = format!(
            "Bearer {}",
            token(&TokenSigner::new(&format!("random-{i}")), &host, "demo")
        );
        {
            let mut s = vm.http_stream().unwrap();
            let action = s.request_headers(&get("/me", Some(&auth)), true).unwrap();
            if action == Action::Pause && s.local_response().is_none() {
                paused.push(s.id());
                std::mem::forget(s);
            } else {
                assert_eq!(s.local_response().map(|l| l.status), Some(401));
                refused += 1;
            }
        }
        vm.tick().unwrap();
        fetches += answer_jwks(&mut vm, 200, &jwks(&[&good]));
        host.clock().advance(Duration::from_millis(100));
    }
    assert_eq!(fetches, 1, "one fetch in the 10 s these 100 requests took");
    assert_eq!(paused.len(), 1);
    assert_eq!(refused, 99);
    let s = vm.stream(paused[0]).unwrap();
    assert_eq!(s.local_response().map(|l| l.status), Some(401));
    assert!(
        s.local_response()
            .unwrap()
            .header("www-authenticate")
            .unwrap()
            .contains("unknown key")
    );
    drop(s);
    // After the interval one more fetch is allowed.
    host.clock().advance(Duration::from_secs(30));
    let auth = format!("Bearer {}", token(&TokenSigner::new("late"), &host, "demo"));
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/me", Some(&auth)), true).unwrap(),
        Action::Pause
    );
    std::mem::forget(s);
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, 200, &jwks(&[&good])), 1);
    // Valid tokens were never disturbed.
    assert_eq!(
        send(
            &mut vm,
            &get(
                "/me",
                Some(&format!("Bearer {}", token(&good, &host, "demo")))
            )
        )
        .action,
        Action::Continue
    );
}

#[test]
fn endpoint_down_or_bad_document_keeps_the_last_good_keys() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = ready(&host, &jwks(&[&s]));
    // Periodic refresh after 300 s: the endpoint fails.
    vm.run_for(Duration::from_secs(301)).unwrap();
    assert_eq!(answer_jwks(&mut vm, 503, ""), 1);
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    assert_eq!(
        send(&mut vm, &get("/me", Some(&auth))).action,
        Action::Continue
    );
    // Retry after the retry delay: a broken document is logged and ignored.
    vm.run_for(Duration::from_secs(3)).unwrap();
    assert_eq!(answer_jwks(&mut vm, 200, r#"{"keys": "nope"}"#), 1);
    vm.run_for(Duration::from_secs(3)).unwrap();
    assert_eq!(
        answer_jwks(
            &mut vm,
            200,
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#
        ),
        1
    );
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    assert_eq!(
        send(&mut vm, &get("/me", Some(&auth))).action,
        Action::Continue
    );
    assert_eq!(host.counter("bearer_auth.jwks_refresh.failed"), Some(3));
    let warns = host.logs_at(LogLevel::Warn);
    assert!(
        warns.iter().any(|l| l.contains("not a JSON key set")),
        "{warns:?}"
    );
    assert!(
        warns.iter().any(|l| l.contains("no usable key")),
        "{warns:?}"
    );
    // A timed-out / reset callout is a failure too.
    vm.run_for(Duration::from_secs(3)).unwrap();
    let calls = vm.callouts();
    assert_eq!(calls.len(), 1);
    vm.fail_callout(calls[0].token).unwrap();
    assert_eq!(
        send(&mut vm, &get("/me", Some(&auth))).action,
        Action::Continue
    );
}

#[test]
fn workers_share_one_key_set_and_one_fetch() {
    workers_share_keys_and_fetches(CasRules::Envoy);
}

/// Kong's ngx_wasm_module creates a missing shared-data key only with CAS 0: the refresh lease
/// must still be taken by exactly one VM there, and the key set shared.
#[test]
fn workers_share_keys_and_fetches_under_ngx_wasm_module_cas_rules() {
    workers_share_keys_and_fetches(CasRules::NgxWasm);
}

fn workers_share_keys_and_fetches(rules: CasRules) {
    let host = Host::new(&MODULE);
    host.set_cas_rules(rules);
    let s = TokenSigner::new("k1");
    let mut vms: Vec<Vm> = (0..4).map(|_| host.plugin(&config("")).unwrap()).collect();
    for vm in &mut vms {
        vm.tick().unwrap();
    }
    let pending: usize = vms.iter().map(|vm| vm.callouts().len()).sum();
    assert_eq!(pending, 1, "one refresher holds the lease");
    for vm in &mut vms {
        answer_jwks(vm, 200, &jwks(&[&s]));
    }
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    for vm in &mut vms {
        // Keys come from shared data, whether or not this VM ticked since.
        assert_eq!(send(vm, &get("/me", Some(&auth))).action, Action::Continue);
    }
    // And the periodic refresh is also done once, not once per VM.
    host.clock().advance(Duration::from_secs(301));
    for vm in &mut vms {
        vm.tick().unwrap();
    }
    assert_eq!(vms.iter().map(|vm| vm.callouts().len()).sum::<usize>(), 1);
    // The refreshed document replaces the stored one (an overwrite, which ngx_wasm_module only
    // takes as a compare-and-swap), and every VM then accepts the new key.
    let s2 = TokenSigner::new("k2");
    for vm in &mut vms {
        answer_jwks(vm, 200, &jwks(&[&s, &s2]));
    }
    let auth2 = format!("Bearer {}", token(&s2, &host, "demo"));
    for vm in &mut vms {
        vm.tick().unwrap();
        assert_eq!(send(vm, &get("/me", Some(&auth2))).action, Action::Continue);
    }
}

#[test]
fn a_vm_without_the_fetch_resumes_paused_requests_when_another_fetched() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut a = host.plugin(&config("")).unwrap();
    let mut b = host.plugin(&config("")).unwrap();
    a.tick().unwrap();
    assert_eq!(a.callouts().len(), 1);
    let auth = format!("Bearer {}", token(&s, &host, "demo"));
    let mut stream = b.http_stream().unwrap();
    assert_eq!(
        stream
            .request_headers(&get("/me", Some(&auth)), true)
            .unwrap(),
        Action::Pause
    );
    let id = stream.id();
    std::mem::forget(stream);
    b.tick().unwrap();
    assert!(b.callouts().is_empty(), "b sees the lease and waits");
    answer_jwks(&mut a, 200, &jwks(&[&s]));
    b.run_for(Duration::from_millis(20)).unwrap();
    let stream = b.stream(id).unwrap();
    assert!(stream.request_resumed());
    assert_eq!(stream.request().header("x-auth-subject"), Some("bob"));
}

#[test]
fn inline_keys_and_hmac_secrets() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let secret = [7u8; 32];
    let cfg = format!(
        r#"{{"issuer": "{ISSUER}", "audiences": ["{AUDIENCE}"], "jwks": {{"inline": {}}},
            "hmac_secrets": [{{"kid": "h1", "alg": "HS256", "secret_base64url": "{}"}}],
            "forward_authorization": false}}"#,
        jwks(&[&s]),
        Base64UrlSafeNoPadding::encode_to_string(secret).unwrap()
    );
    let mut vm = host.plugin(&cfg).unwrap();
    vm.tick().unwrap();
    assert!(vm.callouts().is_empty(), "inline keys need no fetch");
    let a = send(
        &mut vm,
        &get("/x", Some(&format!("Bearer {}", token(&s, &host, "demo")))),
    );
    assert_eq!(a.action, Action::Continue);
    assert_eq!(header(&a, "authorization"), None, "stripped as configured");
    let Value::Object(map) = claims(&host, "demo") else {
        panic!()
    };
    let mut c = Claims::with_custom_claims(map, jwt_simple::prelude::Duration::from_secs(1));
    c.issued_at = None;
    c.expires_at = None;
    c.invalid_before = None;
    let t = HS256Key::from_bytes(&secret)
        .with_key_id("h1")
        .authenticate(c)
        .unwrap();
    assert_eq!(
        send(&mut vm, &get("/x", Some(&format!("Bearer {t}")))).action,
        Action::Continue
    );
}

/// At least a thousand malformed tokens and headers: every one gets 400 or 401, the VM never
/// dies, and a valid token still passes afterwards.
#[test]
fn malformed_corpus_never_crashes_and_is_always_400_or_401() {
    let host = Host::new(&MODULE);
    let s = TokenSigner::new("k1");
    let mut vm = ready(&host, &jwks(&[&s]));
    let good = token(&s, &host, "demo");
    let b64 = |v: &[u8]| Base64UrlSafeNoPadding::encode_to_string(v).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let mut corpus: Vec<String> = Vec::new();
    // Truncation at every position.
    for i in 0..good.len() {
        corpus.push(format!("Bearer {}", &good[..i]));
    }
    // One character changed at many positions.
    for i in (0..good.len()).step_by(3) {
        let mut bytes = good.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        // A change in the unused low bits of a segment's last character decodes to the same
        // bytes: still the genuine signed token, not a malformed one.
        let decoded = |t: &str| -> Vec<Option<Vec<u8>>> {
            t.split('.')
                .map(|p| Base64UrlSafeNoPadding::decode_to_vec(p, None).ok())
                .collect()
        };
        if decoded(&changed) != decoded(&good) {
            corpus.push(format!("Bearer {changed}"));
        }
    }
    // alg none, HS256 signed with the public key, unknown algs, broken headers.
    let public = s.public_key();
    for alg in [
        "none", "None", "HS256", "HS512", "RS256", "ES256", "PS256", "EdDSA ", "",
    ] {
        let h = b64(json!({"alg": alg, "kid": "k1", "typ": "at+jwt"})
            .to_string()
            .as_bytes());
        corpus.push(format!("Bearer {h}.{}.", parts[1]));
        corpus.push(format!("Bearer {h}.{}.{}", parts[1], parts[2]));
    }
    let mac = HS256Key::from_bytes(&public).with_key_id("k1");
    let Value::Object(map) = claims(&host, "demo") else {
        panic!()
    };
    corpus.push(format!(
        "Bearer {}",
        mac.authenticate(Claims::with_custom_claims(
            map,
            jwt_simple::prelude::Duration::from_secs(60)
        ))
        .unwrap()
    ));
    // Wrong types, signed with the real key.
    for (k, v) in [
        ("exp", json!("soon")),
        ("exp", json!(-1)),
        ("exp", json!([1])),
        ("aud", json!(5)),
        ("aud", json!({"a": 1})),
        ("iss", json!(1)),
        ("sub", json!(false)),
        ("scope", json!(3)),
        ("client_id", json!([])),
        ("nbf", json!("x")),
        ("iat", json!({})),
        ("exp", json!(null)),
    ] {
        let mut c = claims(&host, "demo");
        c[k] = v;
        corpus.push(format!("Bearer {}", sign(&s, c)));
    }
    // Deeply nested JSON in the header and in the claims.
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep_obj = format!(r#"{{"alg":"EdDSA","kid":"k1","x":{deep}}}"#);
    corpus.push(format!(
        "Bearer {}.{}.{}",
        b64(deep_obj.as_bytes()),
        parts[1],
        parts[2]
    ));
    corpus.push(format!(
        "Bearer {}.{}.{}",
        parts[0],
        b64(deep.as_bytes()),
        parts[2]
    ));
    let nested = format!(
        "{}{}",
        "{\"a\":".repeat(300),
        "1".to_string() + &"}".repeat(300)
    );
    corpus.push(format!(
        "Bearer {}.{}.{}",
        parts[0],
        b64(nested.as_bytes()),
        parts[2]
    ));
    // Header/payload that are not JSON objects, bad base64, extra parts, huge values.
    for h in [
        "",
        "e30",
        "bnVsbA",
        "WzFd",
        "!!!",
        "eyJhbGciOiJFZERTQSJ9",
        "a=b",
    ] {
        corpus.push(format!("Bearer {h}.{}.{}", parts[1], parts[2]));
        corpus.push(format!("Bearer {}.{h}.{}", parts[0], parts[2]));
    }
    corpus.push(format!("Bearer {good}.x"));
    corpus.push(format!("Bearer {good}{}", "A".repeat(9000)));
    corpus.push(format!("Bearer {}", "a.".repeat(20_000)));
    corpus.push(format!("Bearer {good},Bearer {good}"));
    corpus.push(format!("Bearer {good} {good}"));
    for junk in [
        "Bearer",
        "Bearer ",
        "Bearer\t",
        "bearer   ",
        "Bearer \"x\"",
        "Bearer ===",
        "Bearer a\u{0}b",
        "Bearer é",
        "Bearer 🦀",
        "Bearerx",
        "Bearer,",
        "Bearer a;b",
        "Bearer a\\b",
    ] {
        corpus.push(junk.to_string());
    }
    // Random printable garbage of many lengths.
    let mut seed: u64 = 0x5eed;
    for len in 1..400 {
        let mut t = String::from("Bearer ");
        for _ in 0..len {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t.push(char::from(b'!' + u8::try_from((seed >> 33) % 94).unwrap()));
        }
        corpus.push(t);
    }
    // Three random base64url segments: token-shaped, but nothing in them decodes to a JWT.
    for len in 1..200 {
        let mut t = String::from("Bearer ");
        for part in 0..3 {
            if part > 0 {
                t.push('.');
            }
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                t.push(char::from(
                    alphabet[usize::try_from((seed >> 33) % 64).unwrap()],
                ));
            }
        }
        corpus.push(t);
    }
    assert!(corpus.len() >= 1000, "corpus has {}", corpus.len());
    let doc = jwks(&[&s]);
    let mut waited = 0;
    for (i, auth) in corpus.iter().enumerate() {
        let mut stream = vm.http_stream().unwrap();
        stream
            .request_headers(&get("/api/notes", Some(auth)), true)
            .unwrap();
        let mut status = stream.local_response().map(|l| l.status);
        if status.is_none() {
            // A corrupted kid is an unknown key: the request waits for one refetch first.
            waited += 1;
            stream.vm().tick().unwrap();
            answer_jwks(stream.vm(), 200, &doc);
            status = stream.local_response().map(|l| l.status);
        }
        assert!(
            matches!(status, Some(400 | 401)),
            "#{i} {auth:?} (good: {good}) → {status:?}, upstream {:?}, logs {:?}",
            stream.request().headers,
            stream
                .vm()
                .logs()
                .iter()
                .rev()
                .take(3)
                .map(|l| l.message.clone())
                .collect::<Vec<_>>()
        );
        drop(stream);
        assert!(!vm.is_dead());
    }
    assert!(
        waited <= 1,
        "unknown kids are refetched at most once per interval ({waited})"
    );
    assert_eq!(
        send(&mut vm, &get("/api/notes", Some(&format!("Bearer {good}")))).action,
        Action::Continue
    );
}
