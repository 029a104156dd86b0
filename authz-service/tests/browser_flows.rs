//! The browser flows against the real server over HTTP (free loopback port, temporary SQLite):
//! authorization code + PKCE through the login and consent forms, refresh rotation, code and
//! refresh-token reuse, introspection, revocation, CSRF and the error branches.

// Test code states its expectations bluntly; the no-panic rule is for service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::collections::BTreeMap;

use authz_service::flows::pkce;
use common::*;
use reqwest::header::HeaderMap;
use serde_json::Value;

const REDIRECT: &str = "https://authz.test/callback";
const VERIFIER: &str = "a-test-code-verifier-that-is-long-enough-0123456789";

/// A user agent that keeps cookies and never follows redirects, so every hop is checked.
struct Agent<'a> {
    server: &'a Server,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> String {
        self.headers
            .get("location")
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The value of a hidden form field.
    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    }
}

/// The query parameters of a URL.
fn query(url: &str) -> BTreeMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

impl<'a> Agent<'a> {
    fn new(server: &'a Server) -> Self {
        Agent {
            server,
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with('/') {
            self.server.url(path_or_url)
        } else {
            path_or_url.to_string()
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Reply {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie.join("; "))
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (k, v) = c.split(';').next().unwrap().split_once('=').unwrap();
            self.cookies.insert(k.to_string(), v.to_string());
        }
        Reply {
            status,
            headers,
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        let url = self.absolute(path);
        let req = self.client.get(url);
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let url = self.absolute(path);
        let req = self.client.post(url).form(form);
        self.send(req).await
    }

    /// `GET /oauth2/authorize` with the demo client's defaults, overridden by `params`.
    async fn authorize(&mut self, params: &[(&str, &str)]) -> Reply {
        let mut all: BTreeMap<&str, &str> = BTreeMap::from([
            ("response_type", "code"),
            ("client_id", "123"),
            ("redirect_uri", REDIRECT),
            ("scope", "demo"),
            ("state", "st-1"),
        ]);
        let challenge = pkce::s256(VERIFIER);
        all.insert("code_challenge", &challenge);
        all.insert("code_challenge_method", "S256");
        for (k, v) in params {
            if v.is_empty() {
                all.remove(k);
            } else {
                all.insert(k, v);
            }
        }
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all)
            .finish();
        self.get(&format!("/oauth2/authorize?{q}")).await
    }

    /// From the login redirect: sign in as bob, then answer the consent page.
    async fn login_and_decide(&mut self, location: &str, decision: &str, remember: bool) -> Reply {
        // Already signed in: straight to consent.
        let consent_location = if location.starts_with("/consent?") {
            location.to_string()
        } else {
            assert!(location.starts_with("/login?"), "{location}");
            let page = self.get(location).await;
            assert_eq!(page.status, 200, "{}", page.body);
            let r = self
                .post(
                    "/login",
                    &[
                        ("username", "bob"),
                        ("password", "secret"),
                        ("csrf_token", &page.field("csrf_token")),
                        ("request", &page.field("request")),
                    ],
                )
                .await;
            assert_eq!(r.status, 303, "{}", r.body);
            r.location()
        };
        assert!(
            consent_location.starts_with("/consent?"),
            "{consent_location}"
        );
        let page = self.get(&consent_location).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<code>demo</code>"), "{}", page.body);
        let csrf = page.field("csrf_token");
        let request = page.field("request");
        let mut form = vec![
            ("decision", decision),
            ("csrf_token", csrf.as_str()),
            ("request", request.as_str()),
        ];
        if remember {
            form.push(("remember", "yes"));
        }
        self.post("/consent", &form).await
    }

    /// The whole flow up to the code.
    async fn code(&mut self, params: &[(&str, &str)]) -> String {
        let r = self.authorize(params).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let r = self.login_and_decide(&r.location(), "allow", false).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let q = query(&r.location());
        assert!(r.location().starts_with(REDIRECT));
        q["code"].clone()
    }
}

async fn exchange(server: &Server, code: &str, verifier: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let (status, _, body) = token_request(server, Some(("123", "secret")), &form).await;
    (status, body)
}

async fn refresh(server: &Server, token: &str) -> (u16, Value) {
    let (status, _, body) = token_request(
        server,
        Some(("123", "secret")),
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await;
    (status, body)
}

async fn introspect(server: &Server, token: &str) -> Value {
    let r = http()
        .post(server.url("/oauth2/introspect"))
        .basic_auth("123", Some("secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn revoke(server: &Server, token: &str) -> u16 {
    http()
        .post(server.url("/oauth2/revoke"))
        .basic_auth("123", Some("secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Whether the service logged `needle` (its log is read by another thread: give it a moment).
async fn logged(server: &Server, needle: &str) -> bool {
    for _ in 0..50 {
        if server.log().contains(needle) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    (dir, server)
}

fn error_of(location: &str) -> (String, BTreeMap<String, String>) {
    let q = query(location);
    (q.get("error").cloned().unwrap_or_default(), q)
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_with_pkce_issues_tokens_once() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let r = ua.authorize(&[]).await;
    assert_eq!(r.status, 303);
    // Security headers on every page.
    let page = ua.get(&r.location()).await;
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    let set_cookie = page.headers["set-cookie"].to_str().unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(page.body.contains("<label for=\"password\">"));

    let r = ua.login_and_decide(&r.location(), "allow", false).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.location();
    let q = query(&location);
    assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], ISSUER, "RFC 9207 iss in the response");
    let session = ua.cookies.get("__Host-wasmgate-session").cloned();
    assert!(session.is_some(), "signed in");

    let (status, body) = exchange(&server, &q["code"], Some(VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"].as_str().unwrap();
    let c = claims(at);
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["client_id"], "123");
    assert_eq!(c["scope"], "demo");
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(header(at)["typ"], "at+jwt");
    assert!(body["refresh_token"].as_str().unwrap().len() >= 43);
    let active = introspect(&server, at).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["sub"], "bob");

    // Reuse: refused, and what the code gave is revoked.
    let (status, again) = exchange(&server, &q["code"], Some(VERIFIER)).await;
    assert_eq!(status, 400);
    assert_eq!(again["error"], "invalid_grant");
    assert_eq!(
        introspect(&server, at).await,
        serde_json::json!({"active": false})
    );
    let (status, r) = refresh(&server, body["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, r["error"].as_str()), (400, Some("invalid_grant")));

    // Metadata announces the flow.
    let meta: Value = http()
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{ISSUER}/oauth2/authorize")
    );
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert!(
        !meta["grant_types_supported"]
            .to_string()
            .contains("password")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pkce_is_checked_at_the_token_endpoint() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    // Wrong verifier.
    let code = ua.code(&[]).await;
    let (status, body) = exchange(&server, &code, Some(&"x".repeat(43))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );
    // The failed attempt spent the code.
    let (status, _) = exchange(&server, &code, Some(VERIFIER)).await;
    assert_eq!(status, 400);
    // Challenge sent, verifier missing.
    let code = ua.code(&[]).await;
    let (status, body) = exchange(&server, &code, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Downgrade: no challenge at authorization, a verifier at the token endpoint.
    let code = ua
        .code(&[("code_challenge", ""), ("code_challenge_method", "")])
        .await;
    let (status, body) = exchange(&server, &code, Some(VERIFIER)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no code_challenge")
    );
    // A confidential client may skip PKCE altogether.
    let code = ua
        .code(&[("code_challenge", ""), ("code_challenge_method", "")])
        .await;
    let (status, body) = exchange(&server, &code, None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_errors_redirect_only_to_a_valid_redirect_uri() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    // Not redirectable: an error page, no Location.
    for params in [
        vec![("redirect_uri", "https://evil.test/callback")],
        vec![("redirect_uri", "https://authz.test/callback/")],
        vec![("redirect_uri", "")],
        vec![("client_id", "ghost")],
        vec![("client_id", "")],
    ] {
        let r = ua.authorize(&params).await;
        assert_eq!(r.status, 400, "{params:?}");
        assert!(r.headers.get("location").is_none());
        assert!(r.body.contains("Invalid request"), "{}", r.body);
    }
    let dup = ua
        .get(&format!(
            "/oauth2/authorize?response_type=code&client_id=123&redirect_uri={REDIRECT}&redirect_uri={REDIRECT}"
        ))
        .await;
    assert_eq!(dup.status, 400);

    // Redirectable errors carry error, state and iss.
    for (params, expected) in [
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("scope", "admin")], "invalid_scope"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "short")], "invalid_request"),
        (vec![("code_challenge", "")], "invalid_request"),
    ] {
        let r = ua.authorize(&params).await;
        assert_eq!(r.status, 303, "{params:?}: {}", r.body);
        let location = r.location();
        assert!(location.starts_with(REDIRECT), "{location}");
        let (error, q) = error_of(&location);
        assert_eq!(error, expected, "{params:?}");
        assert_eq!(q["state"], "st-1");
        assert_eq!(q["iss"], ISSUER);
        assert!(!q.contains_key("code"));
    }
    let r = ua
        .get(&format!(
            "/oauth2/authorize?response_type=code&client_id=123&redirect_uri={REDIRECT}&scope=demo&scope=demo"
        ))
        .await;
    assert_eq!(error_of(&r.location()).0, "invalid_request");

    // The password grant is not offered.
    let (status, _, body) = token_request(
        &server,
        Some(("123", "secret")),
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "secret"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn public_clients_must_use_pkce() {
    let (dir, server) = start();
    admin(
        dir.path(),
        &[
            "client",
            "add",
            "spa",
            "--public",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "demo",
            "--redirect-uri",
            "https://spa.test/cb",
        ],
        &[],
    );
    let mut ua = Agent::new(&server);
    let r = ua
        .authorize(&[
            ("client_id", "spa"),
            ("redirect_uri", "https://spa.test/cb"),
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ])
        .await;
    let (error, q) = error_of(&r.location());
    assert_eq!(error, "invalid_request");
    assert!(q["error_description"].contains("PKCE"));

    let r = ua
        .authorize(&[
            ("client_id", "spa"),
            ("redirect_uri", "https://spa.test/cb"),
        ])
        .await;
    let r = ua.login_and_decide(&r.location(), "allow", false).await;
    let code = query(&r.location())["code"].clone();
    // No secret: the client names itself; a public client can't pretend to be 123.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://spa.test/cb"),
        ("code_verifier", VERIFIER),
        ("client_id", "spa"),
    ];
    let (status, _, body) = token_request(&server, None, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["client_id"],
        "spa"
    );
    // Confidential clients can't skip authentication by naming themselves.
    let (status, _, body) = token_request(
        &server,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", "123"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_uri_and_client_bind_the_code() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let code = ua.code(&[]).await;
    let (status, _, body) = token_request(
        &server,
        Some(("123", "secret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://authz.test/other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("redirect_uri")
    );
    let (status, body) = exchange(&server, "not-a-code", Some(VERIFIER)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_returns_access_denied() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let r = ua.authorize(&[("state", "deny-state")]).await;
    let r = ua.login_and_decide(&r.location(), "deny", false).await;
    assert_eq!(r.status, 303);
    let (error, q) = error_of(&r.location());
    assert_eq!(error, "access_denied");
    assert_eq!(q["state"], "deny-state");
    assert_eq!(q["iss"], ISSUER);
    assert!(!q.contains_key("code"));
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_a_valid_csrf_token_are_refused() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let r = ua.authorize(&[]).await;
    let page = ua.get(&r.location()).await;
    let request = page.field("request");
    let good = page.field("csrf_token");
    for csrf in ["", "forged", &good[..good.len() - 2]] {
        let mut form = vec![
            ("username", "bob"),
            ("password", "secret"),
            ("request", request.as_str()),
        ];
        if !csrf.is_empty() {
            form.push(("csrf_token", csrf));
        }
        let r = ua.post("/login", &form).await;
        assert_eq!(r.status, 403, "csrf {csrf:?}");
        assert!(
            r.headers.get("set-cookie").is_none(),
            "no session without CSRF"
        );
    }
    // The right token but another browser's cookie (a cross-site post carries the victim's
    // cookies, never the attacker's token for them).
    let mut other = Agent::new(&server);
    let r = other
        .post(
            "/login",
            &[
                ("username", "bob"),
                ("password", "secret"),
                ("request", request.as_str()),
                ("csrf_token", good.as_str()),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    // Consent too.
    let login = ua.authorize(&[]).await.location();
    let r = ua.login_and_decide(&login, "allow", false).await;
    assert_eq!(r.status, 303);
    let r = ua.authorize(&[]).await;
    let consent = ua.get(&r.location()).await;
    let r = ua
        .post(
            "/consent",
            &[
                ("decision", "allow"),
                ("request", consent.field("request").as_str()),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_refused_then_throttled() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let r = ua.authorize(&[]).await;
    let location = r.location();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let page = ua.get(&location).await;
        let r = ua
            .post(
                "/login",
                &[
                    ("username", "bob"),
                    ("password", "wrong"),
                    ("csrf_token", &page.field("csrf_token")),
                    ("request", &page.field("request")),
                ],
            )
            .await;
        statuses.push(r.status);
        assert!(r.headers.get("location").is_none());
        assert!(!ua.cookies.contains_key("__Host-wasmgate-session"));
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429]);
    // Even the right password waits now.
    let page = ua.get(&location).await;
    let r = ua
        .post(
            "/login",
            &[
                ("username", "bob"),
                ("password", "secret"),
                ("csrf_token", &page.field("csrf_token")),
                ("request", &page.field("request")),
            ],
        )
        .await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("Too many failed sign-ins"));
    assert!(logged(&server, "login failed").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn remembered_consent_skips_the_consent_page() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let r = ua.authorize(&[]).await;
    let r = ua.login_and_decide(&r.location(), "allow", true).await;
    assert!(query(&r.location()).contains_key("code"));
    // Signed in and remembered: straight back to the client with a code.
    let r = ua.authorize(&[("state", "again")]).await;
    assert_eq!(r.status, 303);
    let q = query(&r.location());
    assert!(r.location().starts_with(REDIRECT));
    assert_eq!(q["state"], "again");
    let (status, _) = exchange(&server, &q["code"], Some(VERIFIER)).await;
    assert_eq!(status, 200);
    // Without "remember", a new browser session is asked again.
    let mut fresh = Agent::new(&server);
    let r = fresh.authorize(&[]).await;
    assert!(r.location().starts_with("/login?"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_rotate_and_reuse_revokes_the_grant() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let code = ua.code(&[]).await;
    let (_, first) = exchange(&server, &code, Some(VERIFIER)).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = refresh(&server, &rt1).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "rotated");
    let at2 = second["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&at2)["sub"], "bob");
    assert_eq!(
        introspect(&server, &rt2).await["token_type"],
        "refresh_token"
    );
    assert_eq!(introspect(&server, &rt1).await["active"], false, "spent");

    // Narrower scope is fine, wider is not.
    let (status, body) = token_request(
        &server,
        Some(("123", "secret")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt2.as_str()),
            ("scope", "admin"),
        ],
    )
    .await
    .into_parts();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );

    // rt1 again: someone else holds it. Everything from the grant stops working.
    let (status, body) = refresh(&server, &rt1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(logged(&server, "rotated-away refresh token").await);
    let (status, _) = refresh(&server, &rt2).await;
    assert_eq!(
        status, 400,
        "the newest refresh token of the grant is revoked too"
    );
    assert_eq!(introspect(&server, &at2).await["active"], false);
    assert_eq!(
        introspect(&server, first["access_token"].as_str().unwrap()).await["active"],
        false
    );
}

trait IntoParts {
    fn into_parts(self) -> (u16, Value);
}

impl IntoParts for (u16, HeaderMap, Value) {
    fn into_parts(self) -> (u16, Value) {
        (self.0, self.2)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_and_revocation() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let code = ua.code(&[]).await;
    let (_, tokens) = exchange(&server, &code, Some(VERIFIER)).await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();

    // Introspection needs an authenticated confidential client.
    let r = http()
        .post(server.url("/oauth2/introspect"))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .post(server.url("/oauth2/introspect"))
        .basic_auth("123", Some("wrong"))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let info = introspect(&server, at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], "123");
    assert_eq!(info["scope"], "demo");
    assert_eq!(info["token_type"], "Bearer");
    // Garbage and a tampered token are simply inactive.
    assert_eq!(introspect(&server, "garbage").await["active"], false);
    let tampered = format!("{}x", &at[..at.len() - 1]);
    assert_eq!(introspect(&server, &tampered).await["active"], false);

    // Revoking the access token: inactive, the refresh token still works.
    assert_eq!(revoke(&server, at).await, 200);
    assert_eq!(
        introspect(&server, at).await,
        serde_json::json!({"active": false})
    );
    // Unknown tokens: 200 as well, nothing revealed.
    assert_eq!(revoke(&server, "unknown").await, 200);
    let (status, refreshed) = refresh(&server, rt).await;
    assert_eq!(status, 200);
    let rt2 = refreshed["refresh_token"].as_str().unwrap();
    let at2 = refreshed["access_token"].as_str().unwrap();

    // Revoking the refresh token revokes the grant: its access tokens go inactive too.
    assert_eq!(revoke(&server, rt2).await, 200);
    assert_eq!(introspect(&server, at2).await["active"], false);
    let (status, _) = refresh(&server, rt2).await;
    assert_eq!(status, 400);
    // Revocation also needs client authentication.
    let r = http()
        .post(server.url("/oauth2/revoke"))
        .form(&[("token", at2)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_exchanges_of_one_code_give_at_most_one_token_and_revoke_it() {
    let (_dir, server) = start();
    let mut ua = Agent::new(&server);
    let code = ua.code(&[]).await;
    // Eight clients race with the same code, each on its own task and connection.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = server.url("/oauth2/token");
            let code = code.clone();
            tokio::spawn(async move {
                let r = http()
                    .post(url)
                    .basic_auth("123", Some("secret"))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                    ])
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    // At most one exchange wins. A reuse revokes the grant, so a winner still finishing when
    // another request revokes it is refused too (RFC 6749 §4.1.2: deny the reuse, revoke what
    // the code gave): zero winners is as correct as one.
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert!(ok <= 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, b)| *s == 400 && b["error"] == "invalid_grant"),
        "{results:?}"
    );
    // The reuse revoked what the winner got, if there was one.
    if let Some((_, winner)) = results.iter().find(|(s, _)| *s == 200) {
        let at = winner["access_token"].as_str().unwrap();
        assert_eq!(introspect(&server, at).await["active"], false);
    }
}
