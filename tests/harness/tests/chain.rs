//! The gateway's filter chain on :8443 — bearer-auth, rate-limit, route-rewrite — as compiled
//! `.wasm`, each in its own host (Envoy gives each plugin its own VMs and shared data) on one
//! shared clock. Checks what no single filter's tests can: the headers one filter hands the next,
//! the order, and the shipped configurations of rate-limit and route-rewrite working together.
//!
//! A request runs through the decoders in chain order; a local reply from filter N goes back
//! through the encoders of the filters before N, and an upstream answer through all encoders in
//! reverse order, as in Envoy's filter manager.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::json;
use wasmgate_harness::{
    Action, CallResponse, Clock, FilterModule, Headers, Host, HttpStream, LocalResponse,
    TokenSigner, Vm, filter_wasm, workspace_root,
};

fn module(package: &str) -> FilterModule {
    FilterModule::from_file(filter_wasm(package).unwrap()).unwrap()
}

static BEARER_AUTH: LazyLock<FilterModule> = LazyLock::new(|| module("bearer-auth"));
static RATE_LIMIT: LazyLock<FilterModule> = LazyLock::new(|| module("rate-limit"));
static ROUTE_REWRITE: LazyLock<FilterModule> = LazyLock::new(|| module("route-rewrite"));

const PUBLIC_URL: &str = "https://localhost:8443";

/// A filter's configuration as the stack ships it (`envoy/filters/<name>.json`).
fn shipped_config(name: &str) -> String {
    let path = workspace_root()
        .join("envoy")
        .join("filters")
        .join(format!("{name}.json"));
    std::fs::read_to_string(path)
        .unwrap()
        .replace("${PUBLIC_URL}", PUBLIC_URL)
}

/// bearer-auth as the gateway needs it: `demo` scope on /api/, JWKS from cluster `authz`.
fn bearer_config() -> String {
    json!({
        "issuer": PUBLIC_URL,
        "audiences": ["wasmgate-api"],
        "required_typ": "at+jwt",
        "jwks": {"remote": {"cluster": "authz", "path": "/.well-known/jwks.json",
                            "authority": "authz.internal", "refresh_interval_seconds": 300}},
        "rules": [{"match": {"path_prefix": "/api/"}, "require": {"scopes": ["demo"]}}],
        "default": "anonymous"
    })
    .to_string()
}

/// The key bearer-auth trusts (`k1`), and its tokens.
struct Signer(TokenSigner);

impl Signer {
    fn new() -> Self {
        Self(TokenSigner::new("k1"))
    }

    fn jwks(&self) -> String {
        self.0.jwks().unwrap()
    }

    /// An RFC 9068 access token for `client_id`, issued now, valid five minutes.
    fn token(&self, clock: &Clock, client_id: &str) -> String {
        let now = clock.unix_seconds();
        let claims = json!({
            "iss": PUBLIC_URL, "sub": "bob", "aud": "wasmgate-api", "client_id": client_id,
            "scope": "demo", "iat": now, "exp": now + 300, "jti": format!("j-{now}-{client_id}")
        });
        format!("Bearer {}", self.0.access_token(claims).unwrap())
    }
}

/// What the client gets back, and what the upstream got (if the request got that far).
#[derive(Debug)]
struct Exchange {
    status: u32,
    response: Headers,
    upstream: Option<Headers>,
}

impl Exchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.response.get(name)
    }
    fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream.as_ref().and_then(|h| h.get(name))
    }
}

struct Gateway {
    clock: Clock,
    hosts: [Host; 3],
    vms: [Vm; 3],
}

impl Gateway {
    /// The three filters configured, and bearer-auth's first JWKS fetch answered.
    fn new(signer: &Signer) -> Self {
        let clock = Clock::default();
        let hosts = [
            Host::with_clock(&BEARER_AUTH, clock.clone()),
            Host::with_clock(&RATE_LIMIT, clock.clone()),
            Host::with_clock(&ROUTE_REWRITE, clock.clone()),
        ];
        for host in &hosts {
            host.set_clusters(&["authz", "notes_api", "demo_client"]);
            host.set_property("source.address", "192.0.2.10:40000");
        }
        let mut vms = [
            hosts[0].plugin(&bearer_config()).unwrap(),
            hosts[1].plugin(&shipped_config("rate-limit")).unwrap(),
            hosts[2].plugin(&shipped_config("route-rewrite")).unwrap(),
        ];
        vms[0].tick().unwrap();
        let fetch = vms[0].callouts();
        assert_eq!(fetch.len(), 1, "bearer-auth fetches its keys at start");
        assert_eq!(fetch[0].cluster, "authz");
        vms[0]
            .respond(fetch[0].token, CallResponse::new(200).body(signer.jwks()))
            .unwrap();
        Self { clock, hosts, vms }
    }

    /// Sends a request without body through the chain; an upstream that is reached answers 200.
    fn send(&mut self, path: &str, extra: &[(&str, &str)]) -> Exchange {
        let mut request: Vec<(String, String)> = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost:8443"),
            (":path", path),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();

        let [auth, limit, rewrite] = &mut self.vms;
        let mut streams: Vec<HttpStream<'_>> = vec![
            auth.http_stream().unwrap(),
            limit.http_stream().unwrap(),
            rewrite.http_stream().unwrap(),
        ];
        let mut answered: Option<(usize, LocalResponse)> = None;
        for (i, stream) in streams.iter_mut().enumerate() {
            let pairs: Vec<(&str, &str)> = request
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let action = stream.request_headers(&pairs, true).unwrap();
            if let Some(local) = stream.local_response() {
                answered = Some((i, local));
                break;
            }
            assert_eq!(
                action,
                Action::Continue,
                "filter {i} paused without answering"
            );
            request = stream.request().headers.0;
        }
        let (encoders, status, mut response, upstream) = match answered {
            Some((i, local)) => (i, local.status, local.headers.0, None),
            None => (
                streams.len(),
                200,
                vec![(":status".to_owned(), "200".to_owned())],
                Some(Headers(request)),
            ),
        };
        for stream in streams[..encoders].iter_mut().rev() {
            let pairs: Vec<(&str, &str)> = response
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                stream.response_headers(&pairs, true).unwrap(),
                Action::Continue
            );
            response = stream.response().headers.0;
        }
        Exchange {
            status,
            response: Headers(response),
            upstream,
        }
    }
}

#[test]
fn a_valid_token_reaches_the_notes_api_with_who_is_calling() {
    let signer = Signer::new();
    let mut gw = Gateway::new(&signer);
    let token = signer.token(&gw.clock, "123");
    let ex = gw.send("/api/notes?limit=2", &[("authorization", &token)]);
    assert_eq!(ex.status, 200, "{ex:?}");
    assert_eq!(ex.upstream_header("x-auth-subject"), Some("bob"));
    assert_eq!(ex.upstream_header("x-auth-client-id"), Some("123"));
    assert_eq!(ex.upstream_header("x-auth-scope"), Some("demo"));
    assert_eq!(ex.upstream_header("x-wasmgate-upstream"), Some("notes_api"));
    assert_eq!(ex.upstream_header(":path"), Some("/api/notes?limit=2"));
    // The client learns its budget from rate-limit's headers.
    assert_eq!(ex.header("x-ratelimit-limit"), Some("100"), "{ex:?}");
    assert_eq!(ex.header("x-ratelimit-remaining"), Some("99"));
}

#[test]
fn a_client_cannot_spoof_its_identity_or_pick_the_upstream() {
    let signer = Signer::new();
    let mut gw = Gateway::new(&signer);
    let token = signer.token(&gw.clock, "123");
    let ex = gw.send(
        "/api/notes",
        &[
            ("authorization", &token),
            ("x-auth-client-id", "someone-else"),
            ("x-auth-subject", "admin"),
            ("x-wasmgate-upstream", "demo_client"),
        ],
    );
    assert_eq!(ex.status, 200, "{ex:?}");
    let upstream = ex.upstream.as_ref().unwrap();
    assert_eq!(upstream.get_all("x-auth-client-id"), ["123"]);
    assert_eq!(upstream.get_all("x-auth-subject"), ["bob"]);
    assert_eq!(upstream.get_all("x-wasmgate-upstream"), ["notes_api"]);
}

#[test]
fn without_a_token_the_answer_is_401_and_no_budget_is_spent() {
    let signer = Signer::new();
    let mut gw = Gateway::new(&signer);
    let ex = gw.send("/api/notes", &[("x-auth-client-id", "123")]);
    assert_eq!(ex.status, 401, "{ex:?}");
    assert!(ex.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert!(ex.upstream.is_none());
    // The spoofed client id did not reach rate-limit: client 123 still has its full budget.
    let token = signer.token(&gw.clock, "123");
    let ex = gw.send("/api/notes", &[("authorization", &token)]);
    assert_eq!(ex.header("x-ratelimit-remaining"), Some("99"), "{ex:?}");
}

#[test]
fn the_101st_request_of_a_client_in_a_minute_is_429_and_a_minute_later_it_passes() {
    let signer = Signer::new();
    let mut gw = Gateway::new(&signer);
    let token = signer.token(&gw.clock, "123");
    let other = signer.token(&gw.clock, "456");
    for i in 0..100 {
        let ex = gw.send("/api/notes", &[("authorization", &token)]);
        assert_eq!(ex.status, 200, "request {i}: {ex:?}");
    }
    let ex = gw.send("/api/notes", &[("authorization", &token)]);
    assert_eq!(ex.status, 429, "{ex:?}");
    assert!(ex.upstream.is_none());
    // Rate limits are per client.
    assert_eq!(
        gw.send("/api/notes", &[("authorization", &other)]).status,
        200
    );
    gw.clock.advance(Duration::from_secs(60));
    let token = signer.token(&gw.clock, "123");
    assert_eq!(
        gw.send("/api/notes", &[("authorization", &token)]).status,
        200
    );
}

#[test]
fn an_expired_token_is_refused_before_it_costs_anything() {
    let signer = Signer::new();
    let mut gw = Gateway::new(&signer);
    let token = signer.token(&gw.clock, "123");
    assert_eq!(
        gw.send("/api/notes", &[("authorization", &token)]).status,
        200
    );
    // Past exp (300 s) and any clock-skew leeway the filter allows.
    gw.clock.advance(Duration::from_secs(300 + 120));
    // Keep bearer-auth's key set fresh: answer any refresh it asks for.
    let jwks = signer.jwks();
    for call in gw.vms[0].callouts() {
        gw.vms[0]
            .respond(call.token, CallResponse::new(200).body(jwks.clone()))
            .unwrap();
    }
    let ex = gw.send("/api/notes", &[("authorization", &token)]);
    assert_eq!(ex.status, 401, "{ex:?}");
    assert!(
        ex.header("www-authenticate")
            .unwrap()
            .contains("invalid_token"),
        "{ex:?}"
    );
    // Only the first request was counted by rate-limit (counts reach the host on its tick).
    gw.vms[1].tick().unwrap();
    assert_eq!(
        gw.hosts[1].counter("rate-limit.policy.per-client.allowed"),
        Some(1)
    );
}
