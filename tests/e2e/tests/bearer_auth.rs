//! bearer-auth end to end: real Envoy (two workers) over TLS with the dev CA, real tokens from the
//! authz-service. The RFC 6750 answers on `/api/notes`, `/me` and `/protected`; spoofed identity
//! headers never reach the demo API; the JWKS is fetched once for both workers; a key rotated in
//! at the authz-service is picked up on the first token that names it; a corpus of malformed
//! tokens and headers gets 400/401 every time and Envoy keeps serving valid tokens.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use wasmgate_e2e::{Stack, StackOptions, client_credentials_token, stats_once};
use xtask::paths::{bin_dir, root};

const REALM_ONLY: &str = r#"Bearer realm="wasmgate""#;

/// The stack's own bearer-auth config (`envoy/filters/bearer-auth.json`), with no clock skew so
/// an expired token is refused at once.
fn bearer_auth_config() -> String {
    let text = std::fs::read_to_string(root().join("envoy/filters/bearer-auth.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["clock_skew_seconds"] = json!(0);
    config.to_string()
}

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

/// Registers a client and returns a client_credentials token for it.
async fn token_for_new_client(stack: &Stack, id: &str, extra: &[&str]) -> String {
    let mut args = vec!["client", "add", id];
    args.extend_from_slice(extra);
    let out = authz_cli(stack, &args);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    let response = stack
        .https_client()
        .unwrap()
        .post(stack.https_url("/oauth2/token"))
        .basic_auth(id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn www(&self) -> &str {
        self.headers
            .get("www-authenticate")
            .map_or("", |v| v.to_str().unwrap())
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn get(stack: &Stack, path: &str, headers: &[(&str, HeaderValue)]) -> Reply {
    let mut request = stack.https_client().unwrap().get(stack.https_url(path));
    for (name, value) in headers {
        request = request.header(*name, value.clone());
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

fn bearer(token: &str) -> (&'static str, HeaderValue) {
    (
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    )
}

/// The filter's counters as Envoy reports them (`wasmcustom.bearer_auth.*`), summed over workers.
async fn counter(stack: &Stack, name: &str) -> u64 {
    let text = reqwest::get(stack.admin_url("/stats?filter=bearer_auth"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    counter_in(&text, name)
}

/// One bearer-auth counter in Envoy's stats text (0 if it is not there).
fn counter_in(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("wasmcustom.bearer_auth.{name}: ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_auth_through_envoy() {
    let mut stack = Stack::start(
        StackOptions::for_test("bearer_auth")
            .concurrency(2)
            .filter_config("bearer-auth", bearer_auth_config()),
    )
    .await
    .unwrap();

    let demo = client_credentials_token(&stack, "demo").await.unwrap();
    rfc6750_matrix(&stack, &demo).await;
    spoofed_identity_never_reaches_the_api(&stack, &demo).await;
    counts_reach_envoy_within_a_tick(&stack, &demo).await;

    // Both workers verified tokens, yet the JWKS was fetched once.
    assert_eq!(
        counter(&stack, "jwks_refresh.ok").await,
        1,
        "{}",
        stack.log("envoy")
    );
    assert_eq!(counter(&stack, "jwks_refresh.failed").await, 0);

    key_rotation_is_picked_up_on_first_use(&stack).await;
    malformed_input_gets_400_or_401_and_envoy_keeps_serving(&stack, &demo).await;

    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
    stack.stop();
}

/// The filter adds its counts up in each VM and hands them to Envoy on its one-second tick: the
/// stats catch up with the requests within that, exactly, summed over both workers.
async fn counts_reach_envoy_within_a_tick(stack: &Stack, demo: &str) {
    // Whatever the earlier requests counted is flushed after a tick.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = counter(stack, "allowed").await;
    for _ in 0..10 {
        let r = get(stack, "/api/notes", &[bearer(demo)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let stats = stats_once(stack, "?filter=bearer_auth", |stats| {
        counter_in(stats, "allowed") >= before + 10
    })
    .await;
    assert_eq!(
        counter_in(&stats, "allowed"),
        before + 10,
        "counts not flushed within a tick"
    );
}

async fn rfc6750_matrix(stack: &Stack, demo: &str) {
    let other = token_for_new_client(stack, "other-scope", &["--scope", "other"]).await;
    let short = token_for_new_client(
        stack,
        "short-lived",
        &["--scope", "demo", "--token-lifetime-secs", "1"],
    )
    .await;

    for path in ["/api/notes", "/me", "/protected"] {
        // Valid token with the scope: through to the demo API (several times: cached after one).
        for _ in 0..3 {
            let r = get(stack, path, &[bearer(demo)]).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            assert_eq!(
                r.header("x-demo-received-auth-client-id"),
                Some("123"),
                "{path}"
            );
        }
        // No token: 401, a challenge with the realm and no error code.
        let r = get(stack, path, &[]).await;
        assert_eq!(
            (r.status, r.www()),
            (StatusCode::UNAUTHORIZED, REALM_ONLY),
            "{path}"
        );
        assert!(
            r.header("x-demo-received-path").is_none(),
            "{path}: the API was reached"
        );
        // Another scheme is no bearer token either.
        let basic = (
            "authorization",
            HeaderValue::from_static("Basic MTIzOnNlY3JldA=="),
        );
        let r = get(stack, path, &[basic]).await;
        assert_eq!(
            (r.status, r.www()),
            (StatusCode::UNAUTHORIZED, REALM_ONLY),
            "{path}"
        );
        // Malformed credentials: 400 invalid_request.
        let bad = ("authorization", HeaderValue::from_static("Bearer a b"));
        let r = get(stack, path, &[bad]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            r.www().contains(r#"error="invalid_request""#),
            "{path}: {}",
            r.www()
        );
        // A forged token: 401 invalid_token, and a JSON body with the same error.
        let mut forged = demo.to_owned();
        forged.truncate(forged.len() - 4);
        forged.push_str("AAAA");
        let r = get(stack, path, &[bearer(&forged)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            r.www().contains(
                r#"error="invalid_token", error_description="the token signature is invalid""#
            ),
            "{path}: {}",
            r.www()
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert!(
            !r.body.contains(&demo[demo.len() - 20..]),
            "the token is never echoed"
        );
    }

    // Scope: /me takes any valid token, /api and /protected need `demo` (403 insufficient_scope).
    let r = get(stack, "/me", &[bearer(&other)]).await;
    assert_eq!(r.status, StatusCode::OK);
    for path in ["/api/notes", "/protected"] {
        let r = get(stack, path, &[bearer(&other)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            r.www().contains(r#"error="insufficient_scope""#)
                && r.www().ends_with(r#"scope="demo""#),
            "{}",
            r.www()
        );
    }

    // Expired (skew 0 in this stack): 401 invalid_token naming the reason.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let r = get(stack, "/me", &[bearer(&short)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.www()
            .contains(r#"error_description="the token has expired""#),
        "{}",
        r.www()
    );

    // Anonymous routes stay open: the token endpoint's Basic auth was used above, pages load.
    assert_eq!(get(stack, "/", &[]).await.status, StatusCode::OK);
    assert_eq!(
        get(stack, "/.well-known/jwks.json", &[]).await.status,
        StatusCode::OK
    );
}

async fn spoofed_identity_never_reaches_the_api(stack: &Stack, demo: &str) {
    let spoof = [
        bearer(demo),
        ("x-auth-client-id", HeaderValue::from_static("admin")),
        ("x-auth-subject", HeaderValue::from_static("root")),
        ("x-auth-scope", HeaderValue::from_static("demo admin")),
    ];
    for path in ["/api/notes", "/me"] {
        let r = get(stack, path, &spoof).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header("x-demo-received-auth-client-id"),
            Some("123"),
            "{path}"
        );
        assert_ne!(
            r.header("x-demo-received-auth-subject"),
            Some("root"),
            "{path}"
        );
        assert!(
            !r.header("x-demo-received-auth-scope")
                .unwrap_or("")
                .contains("admin"),
            "{path}"
        );
    }
}

async fn key_rotation_is_picked_up_on_first_use(stack: &Stack) {
    // A new key that signs at once, here ES256: the filter has never seen its kid.
    authz_cli(
        stack,
        &["keys", "rotate", "--alg", "ES256", "--activate-in", "0"],
    );
    let token = client_credentials_token(stack, "demo").await.unwrap();
    let r = get(stack, "/api/notes", &[bearer(&token)]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{} {}",
        r.www(),
        stack.log("envoy")
    );
    // One refetch, shared by both workers: the other worker needs none.
    assert_eq!(counter(stack, "jwks_refresh.ok").await, 2);
    for _ in 0..4 {
        assert_eq!(
            get(stack, "/me", &[bearer(&token)]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(counter(stack, "jwks_refresh.ok").await, 2);
    // Random kids do not cause a fetch storm: at most one more fetch per 30 s interval.
    let header = r#"{"alg":"EdDSA","typ":"at+jwt","kid":"#;
    for i in 0..20 {
        let h = b64(format!(r#"{header}"random-{i}"}}"#).as_bytes());
        let forged = format!("{h}.{}", token.split_once('.').unwrap().1);
        let r = get(stack, "/me", &[bearer(&forged)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert!(counter(stack, "jwks_refresh.ok").await <= 3);
}

async fn malformed_input_gets_400_or_401_and_envoy_keeps_serving(stack: &Stack, demo: &str) {
    let mut corpus: Vec<HeaderValue> = Vec::new();
    for i in 0..demo.len() {
        corpus.push(HeaderValue::from_str(&format!("Bearer {}", &demo[..i])).unwrap());
    }
    // Every position corrupted (but the last, whose low bits are base64 padding) and deleted.
    for i in 0..demo.len() {
        if i + 1 < demo.len() {
            let mut bytes = demo.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            corpus.push(HeaderValue::from_bytes(&[&b"Bearer "[..], &bytes].concat()).unwrap());
        }
        let deleted = format!("{}{}", &demo[..i], &demo[i + 1..]);
        corpus.push(HeaderValue::from_str(&format!("Bearer {deleted}")).unwrap());
    }
    let (h, rest) = demo.split_once('.').unwrap();
    for header in [
        json!({"alg": "none", "typ": "at+jwt"}),
        json!({"alg": "HS256", "typ": "at+jwt", "kid": "x"}),
        json!({"alg": "RS256"}),
        json!([1, 2]),
        json!("text"),
    ] {
        corpus.push(
            HeaderValue::from_str(&format!(
                "Bearer {}.{rest}",
                b64(header.to_string().as_bytes())
            ))
            .unwrap(),
        );
    }
    corpus.push(HeaderValue::from_str(&format!("Bearer {h}.{}.AAAA", b64(&[b'['; 2000]))).unwrap());
    corpus.push(HeaderValue::from_str(&format!("Bearer {}", "A".repeat(9_000))).unwrap());
    corpus.push(HeaderValue::from_str(&format!("Bearer {demo},Bearer {demo}")).unwrap());
    corpus.push(HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").unwrap());
    corpus.push(HeaderValue::from_static("Bearer"));
    corpus.push(HeaderValue::from_static("Bearer ==="));
    assert!(corpus.len() >= 1000, "corpus of {} only", corpus.len());
    for value in &corpus {
        let r = get(stack, "/me", &[("authorization", value.clone())]).await;
        assert!(
            matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED),
            "{:?} → {}",
            &value.as_bytes()[..value.len().min(60)],
            r.status
        );
    }
    // Two Authorization headers: 400.
    let r = get(
        stack,
        "/me",
        &[
            bearer(demo),
            (
                "authorization",
                HeaderValue::from_str(&format!("Bearer {demo}")).unwrap(),
            ),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.www());
    // Still serving valid tokens.
    assert_eq!(
        get(stack, "/me", &[bearer(demo)]).await.status,
        StatusCode::OK
    );
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The stack's bearer-auth config with one field replaced.
fn bearer_auth_config_with(field: &str, value: Value) -> String {
    let mut config: Value = serde_json::from_str(&bearer_auth_config()).unwrap();
    config[field] = value;
    config.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_of_another_issuer_or_audience_get_invalid_token() {
    // Two gateways that trust someone else: one another issuer, one another audience. The
    // authz-service's genuine, well-signed tokens must be refused by both, naming the reason.
    let (wrong_issuer, wrong_audience) = tokio::join!(
        Stack::start(StackOptions::for_test("bearer_wrong_issuer").filter_config(
            "bearer-auth",
            bearer_auth_config_with("issuer", json!("https://issuer.example")),
        )),
        Stack::start(
            StackOptions::for_test("bearer_wrong_audience").filter_config(
                "bearer-auth",
                bearer_auth_config_with("audiences", json!(["another-api"])),
            )
        ),
    );
    for (stack, reason) in [
        (wrong_issuer.unwrap(), "untrusted issuer"),
        (wrong_audience.unwrap(), "not meant for this audience"),
    ] {
        let token = client_credentials_token(&stack, "demo").await.unwrap();
        for path in ["/api/notes", "/me", "/protected"] {
            let r = get(&stack, path, &[bearer(&token)]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.body);
            assert!(r.www().contains(r#"error="invalid_token""#), "{}", r.www());
            assert!(r.www().contains(reason), "{path}: {}", r.www());
            assert!(!r.body.contains(&token), "the token is never echoed");
        }
    }
}
