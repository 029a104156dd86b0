//! The foundation, end to end: real Envoy from the wheel, real TLS with the dev CA, the demo API
//! behind the three wasm filters, the admin interface on loopback only, and nothing left running.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use reqwest::{StatusCode, Version};
use wasmgate_e2e::{Stack, StackOptions, client_credentials_token, pid_is_alive};

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_stack_end_to_end() {
    let mut stack = Stack::start(StackOptions::for_test("gateway").concurrency(2))
        .await
        .unwrap();

    http_redirects_to_https_keeping_path_and_query(&stack).await;
    https_verifies_against_the_dev_ca_only(&stack).await;
    every_https_response_carries_hsts_and_h2_is_negotiated(&stack).await;
    the_three_filters_are_in_the_chain(&stack).await;
    api_notes_reaches_the_demo_api_through_the_filters(&stack).await;
    admin_is_not_reachable_on_a_non_loopback_address(&stack);

    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
    let pids = stack.pids();
    assert_eq!(pids.len(), 4, "envoy, authz, notes-api, demo-client");
    drop(stack);
    let left: Vec<u32> = pids.into_iter().filter(|p| pid_is_alive(*p)).collect();
    assert!(
        left.is_empty(),
        "processes left running after the stack stopped: {left:?}"
    );
}

async fn http_redirects_to_https_keeping_path_and_query(stack: &Stack) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    for path in ["/x?y=1", "/api/notes/7?a=b&c=%20d", "/"] {
        let response = client.get(stack.http_url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{path}");
        let location = response.headers()["location"].to_str().unwrap();
        assert_eq!(location, stack.https_url(path));
    }
    // Not only GET: a POST is redirected too, never served over plain HTTP.
    let response = client
        .post(stack.http_url("/oauth2/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
}

async fn https_verifies_against_the_dev_ca_only(stack: &Stack) {
    // Trusting the dev CA (and nothing else), the certificate verifies for localhost.
    let response = stack
        .https_client()
        .unwrap()
        .get(stack.https_url("/"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());

    // With the public roots only, the handshake must fail: the server certificate is ours.
    let public_roots_only = reqwest::Client::builder().no_proxy().build().unwrap();
    let error = public_roots_only
        .get(stack.https_url("/"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}

async fn every_https_response_carries_hsts_and_h2_is_negotiated(stack: &Stack) {
    let client = stack.https_client().unwrap();
    for path in ["/", "/no-such-page", "/.well-known/jwks.json", "/api/notes"] {
        let response = client.get(stack.https_url(path)).send().await.unwrap();
        let hsts = response
            .headers()
            .get("strict-transport-security")
            .unwrap_or_else(|| panic!("no HSTS on {path} ({})", response.status()));
        assert!(
            hsts.to_str().unwrap().contains("max-age=31536000"),
            "{hsts:?}"
        );
        assert_eq!(
            response.version(),
            Version::HTTP_2,
            "ALPN should pick h2 on {path}"
        );
    }
}

async fn the_three_filters_are_in_the_chain(stack: &Stack) {
    let dump = reqwest::get(stack.admin_url("/config_dump?resource=dynamic_active_listeners"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dump = if dump.contains("wasmgate.bearer_auth") {
        dump
    } else {
        reqwest::get(stack.admin_url("/config_dump"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // In the HTTPS listener's chain (the redirect listener has a router of its own before it).
    let chain = &dump[dump
        .find("wasmgate.bearer_auth")
        .expect("bearer-auth not in the config")..];
    let positions: Vec<usize> = [
        "wasmgate.bearer_auth",
        "wasmgate.rate_limit",
        "wasmgate.route_rewrite",
        "envoy.filters.http.router",
    ]
    .iter()
    .map(|name| {
        chain
            .find(name)
            .unwrap_or_else(|| panic!("{name} not in the chain"))
    })
    .collect();
    assert!(positions.is_sorted(), "filter order: {positions:?}");
}

async fn api_notes_reaches_the_demo_api_through_the_filters(stack: &Stack) {
    let client = stack.https_client().unwrap();
    let token = client_credentials_token(stack, "demo").await.unwrap();

    let created = client
        .post(stack.https_url("/api/notes"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "from the gateway", "content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let note: serde_json::Value = created.json().await.unwrap();

    let response = client
        .get(stack.https_url("/api/notes?limit=5"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    // route-rewrite: the demo API received the rewritten path, on the upstream the rule chose.
    assert_eq!(header("x-demo-received-path"), "/api/notes?limit=5");
    assert_eq!(header("x-demo-received-host"), "localhost:3002");
    // bearer-auth: the identity of the token reached the upstream.
    assert_eq!(header("x-demo-received-auth-client-id"), "123");
    assert!(
        header("x-demo-received-auth-scope")
            .split(' ')
            .any(|s| s == "demo")
    );
    let notes: Vec<serde_json::Value> = response.json().await.unwrap();
    assert!(notes.contains(&note), "{notes:?} lacks {note}");

    // Without a token, the API is not reached.
    let anonymous = client
        .get(stack.https_url("/api/notes"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().get("x-demo-received-path").is_none());
}

/// The machine's address on its default route, if it has one (no packet is sent).
fn non_loopback_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn admin_is_not_reachable_on_a_non_loopback_address(stack: &Stack) {
    let e = &stack.endpoints;
    assert_eq!(e.admin.host, "127.0.0.1");
    assert!(
        TcpStream::connect(("127.0.0.1", e.admin.port)).is_ok(),
        "admin is up on loopback"
    );
    let Some(ip) = non_loopback_address() else {
        eprintln!("no non-loopback address on this machine: only the bind address is checked");
        return;
    };
    // The local stack is loopback-only: neither admin nor the gateway listeners answer outside.
    for (what, port) in [
        ("admin", e.admin.port),
        ("http", e.http_port),
        ("https", e.https_port),
    ] {
        let result = TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2));
        assert!(result.is_err(), "{what} answered on {ip}:{port}");
    }
}
