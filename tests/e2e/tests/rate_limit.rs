//! The rate-limit filter end to end: real Envoy from the wheel, real TLS, real tokens from the
//! authz-service, the demo notes API behind the three filters.
//!
//! - The seed's scenario: 150 requests from client `123` → 100 pass plus exactly the tokens
//!   refilled while the test ran, the rest 429 with Retry-After; the headers count down and the
//!   draft-10 fields agree with the X-RateLimit triple; another client has its own bucket.
//! - Envoy at `--concurrency 2`: 200 concurrent requests for one key spread over both workers,
//!   limit 100 over an hour → exactly 100 pass.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wasmgate_e2e::{
    Stack, StackOptions, client_credentials_token, https_client_trusting, stats_once, sum_stat,
};

/// One token every 600 ms: the seed's 100 requests per 60 s.
const TOKEN_EVERY: Duration = Duration::from_millis(600);

/// What a client learns from one response.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    limit: u64,
    remaining: u64,
    reset: u64,
    policy: String,
    draft: String,
    retry_after: Option<u64>,
    content_type: String,
}

async fn get_notes(client: &reqwest::Client, stack: &Stack, token: &str) -> Seen {
    let response = client
        .get(stack.https_url("/api/notes"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let h = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let n = |name: &str| -> u64 {
        h(name)
            .unwrap_or_else(|| panic!("no {name}: {:?}", response.headers()))
            .parse()
            .unwrap()
    };
    Seen {
        status: response.status(),
        limit: n("x-ratelimit-limit"),
        remaining: n("x-ratelimit-remaining"),
        reset: n("x-ratelimit-reset"),
        policy: h("ratelimit-policy").unwrap_or_default(),
        draft: h("ratelimit").unwrap_or_default(),
        retry_after: h("retry-after").map(|v| v.parse().unwrap()),
        content_type: h("content-type").unwrap_or_default(),
    }
}

/// A token for the second demo client (`jwt-demo`, private_key_jwt), obtained the way the
/// seed's JWT script does it: the authz-service's `token` command signs the client assertion
/// with the demo key in the stack's data directory and calls the token endpoint through the
/// gateway.
fn jwt_client_token(stack: &Stack) -> String {
    let output = std::process::Command::new(xtask::paths::bin_dir().join("authz-service"))
        .args(["token", "private-key-jwt", "--scope", "demo"])
        .args(["--issuer", &stack.endpoints.public_url])
        .arg("--data-dir")
        .arg(stack.run_dir.join("authz-data"))
        .arg("--ca-cert")
        .arg(&stack.certs.ca_cert)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "token command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_scenario_150_requests_and_independent_clients() {
    let mut stack = Stack::start(StackOptions::for_test("rate_limit_seed"))
        .await
        .unwrap();
    let token = client_credentials_token(&stack, "demo").await.unwrap();
    let client = stack.https_client().unwrap();

    let started = Instant::now();
    let mut first_answered = started;
    let mut last_sent = started;
    let mut seen = Vec::new();
    for i in 0..150 {
        last_sent = Instant::now();
        seen.push(get_notes(&client, &stack, &token).await);
        if i == 0 {
            first_answered = Instant::now();
        }
    }
    let finished = Instant::now();

    // Tokens refilled while the test ran: Envoy handled the first request before we read its
    // answer and the last one after we sent it, so its own elapsed time lies between these two.
    let at_least = ((last_sent - first_answered).as_nanos() / TOKEN_EVERY.as_nanos()) as usize;
    let at_most = ((finished - started).as_nanos() / TOKEN_EVERY.as_nanos()) as usize;
    let passed = seen.iter().filter(|s| s.status == StatusCode::OK).count();
    assert!(
        (100 + at_least..=100 + at_most).contains(&passed),
        "{passed} passed; expected 100 + {at_least}..={at_most} refilled in {:?}",
        finished - started
    );

    let mut previous: Option<&Seen> = None;
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.limit, 100, "request {i}");
        assert_eq!(s.policy, "\"per-client\";q=100;w=60", "request {i}");
        assert_eq!(
            s.draft,
            format!("\"per-client\";r={};t={}", s.remaining, s.reset),
            "request {i}: the draft-10 field agrees with X-RateLimit-*"
        );
        match s.status {
            StatusCode::OK => assert_eq!(s.retry_after, None, "request {i}"),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(s.remaining, 0, "request {i}");
                assert!(
                    s.retry_after.is_some_and(|r| (1..=1).contains(&r)),
                    "request {i}: a token comes back within 600 ms: {:?}",
                    s.retry_after
                );
                assert_eq!(s.content_type, "application/problem+json");
            }
            other => panic!("request {i}: unexpected {other}"),
        }
        // Counting down: each passed request takes one, refills add back at most what the
        // elapsed time allows.
        match previous {
            None => assert_eq!((s.status, s.remaining), (StatusCode::OK, 99)),
            Some(p) if s.status == StatusCode::OK => {
                assert!(
                    s.remaining + 1 >= p.remaining && s.remaining < p.remaining + at_most as u64,
                    "request {i}: remaining {} after {}",
                    s.remaining,
                    p.remaining
                );
            }
            Some(_) => {}
        }
        previous = Some(s);
    }
    // The bucket runs dry at request 99 + r (counting from 0), r being the tokens refilled before
    // then, and r is at most `passed - 100`. Bounding it by `at_least` instead failed when Envoy's
    // own span crossed a refill that ours (shorter by two round trips) did not.
    assert!(
        seen.iter().take(passed).skip(90).any(|s| s.remaining == 0),
        "the count reached 0"
    );

    // Another client application has its own bucket; client 123 stays limited.
    let other = jwt_client_token(&stack);
    let s = get_notes(&client, &stack, &other).await;
    assert_eq!((s.status, s.remaining), (StatusCode::OK, 99));
    let again = get_notes(&client, &stack, &token).await;
    // (unless a token came back meanwhile: then it is the only one)
    assert!(again.status == StatusCode::TOO_MANY_REQUESTS || again.remaining == 0);

    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_let_exactly_the_limit_through() {
    let config = r#"{"policies":[{"name":"per-client","match":{"path_prefix":"/api/"},
        "key":[{"header":"x-auth-client-id"}],"limit":100,"interval":"1h"}]}"#;
    let mut stack = Stack::start(
        StackOptions::for_test("rate_limit_concurrency")
            .concurrency(2)
            .filter_config("rate-limit", config),
    )
    .await
    .unwrap();
    let token = client_credentials_token(&stack, "demo").await.unwrap();

    // 20 clients, each with its own connection, 10 requests each, all at once: Envoy spreads
    // the connections over its two workers.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = https_client_trusting(&stack.certs.ca_cert).unwrap();
        let url = stack.https_url("/api/notes");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let requests = (0..10).map(|_| client.get(&url).bearer_auth(&token).send());
            let responses = futures_join_all(requests).await;
            responses
                .into_iter()
                .map(|r| r.unwrap().status())
                .collect::<Vec<_>>()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.unwrap());
    }
    let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(
        (count(StatusCode::OK), count(StatusCode::TOO_MANY_REQUESTS)),
        (100, 100),
        "{statuses:?}"
    );

    // Both workers served connections, and the filter's counters agree once each VM's tick
    // handed its counts to Envoy (within a second).
    let stats = stats_once(&stack, "", |stats| {
        sum_stat(stats, "rate-limit.policy.per-client.allowed") >= 100
            && sum_stat(stats, "rate-limit.policy.per-client.limited") >= 100
    })
    .await;
    let stat = |name: &str| sum_stat(&stats, name);
    let https = format!("_{}.", stack.endpoints.https_port);
    let per_worker = |w: u32| -> u64 {
        stats
            .lines()
            .filter(|l| {
                l.contains(&https) && l.contains(&format!("worker_{w}.downstream_cx_total"))
            })
            .filter_map(|l| {
                l.split_once(": ")
                    .map(|(_, v)| v.trim().parse::<u64>().unwrap_or(0))
            })
            .sum()
    };
    assert!(
        per_worker(0) > 0 && per_worker(1) > 0,
        "both workers must take connections: {} and {}",
        per_worker(0),
        per_worker(1)
    );
    assert_eq!(stat("rate-limit.policy.per-client.allowed"), 100);
    assert_eq!(stat("rate-limit.policy.per-client.limited"), 100);
    assert_eq!(stat("rate-limit.policy.per-client.failures"), 0);
    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
}

/// Runs futures concurrently on this task (the e2e crate has no `futures` dependency).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
