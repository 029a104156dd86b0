//! The demo client's web pages, served behind the gateway at `/` and `/callback`.
//!
//! It plays the seed's OAuth client `123`: the home page offers each grant; the authorization
//! code flow runs with PKCE and a `state` kept in an `HttpOnly` cookie; the callback checks
//! `state` and `iss` (RFC 9207), exchanges the code on the server side (the client secret never
//! reaches the browser), and shows the token with its decoded claims and buttons that call the
//! API through the gateway.
//!
//! Settings beyond `--public-url`, from the environment (the demo's defaults fit the stack):
//! `DEMO_CLIENT_ID` / `DEMO_CLIENT_SECRET` (default `123` / `secret`), `DEMO_TOKEN_URL` (default
//! `<public url>/oauth2/token`), `DEMO_CA_CERT` (a PEM CA to trust for that URL, e.g. the dev
//! CA; the public web roots otherwise).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Cookie holding `state.verifier` between `/start` and `/callback`.
const FLOW_COOKIE: &str = "__Host-demo-flow";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

struct Demo {
    public_url: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
}

impl Demo {
    fn redirect_uri(&self) -> String {
        format!("{}/callback", self.public_url)
    }
}

fn http_client() -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10));
    if let Some(path) = std::env::var_os("DEMO_CA_CERT") {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
        {
            Ok(ca) => b = b.add_root_certificate(ca),
            Err(e) => tracing::warn!("DEMO_CA_CERT {}: {e}", path.to_string_lossy()),
        }
    }
    b.build().unwrap_or_else(|e| {
        tracing::warn!("HTTP client with custom settings failed ({e}); using the defaults");
        reqwest::Client::new()
    })
}

pub fn router(public_url: String) -> Router {
    let public_url = public_url.trim_end_matches('/').to_string();
    let env = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_string());
    routes(Demo {
        token_url: env("DEMO_TOKEN_URL", &format!("{public_url}/oauth2/token")),
        client_id: env("DEMO_CLIENT_ID", "123"),
        client_secret: env("DEMO_CLIENT_SECRET", "secret"),
        http: http_client(),
        public_url,
    })
}

fn routes(demo: Demo) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/start", get(start))
        .route("/callback", get(callback))
        .route("/client-credentials", post(client_credentials))
        .route("/jwt-bearer", post(jwt_bearer))
        .route("/demo.js", get(script))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Arc::new(demo))
}

/// A page with the headers every demo page carries: no framing, scripts only from us.
fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let mut r = (status, page(title, body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn home(State(demo): State<Arc<Demo>>) -> Response {
    let body = format!(
        "<p>This page plays the OAuth client <code>{id}</code> of the gateway at \
         <code>{url}</code>. Pick a way to get an access token, then call the API with it.</p>\
         <section><h2>Authorization code + PKCE</h2>\
         <p>A user (try <code>bob</code> / <code>secret</code>) signs in at the authorization \
         server and allows this app to act for them; PKCE ties the code to this browser.</p>\
         <p><a id=\"start-code\" class=\"button\" href=\"/start\">Sign in with wasmgate</a></p>\
         </section>\
         <section><h2>Client credentials</h2>\
         <p>The app gets a token for itself, with its own id and secret: no user involved.</p>\
         <form method=\"post\" action=\"/client-credentials\">\
         <button id=\"start-client-credentials\" type=\"submit\">Get an app token</button></form>\
         </section>\
         <section><h2>JWT bearer (RFC 7523)</h2>\
         <p>A service presents a JWT it signed (client <code>jwt-demo</code>, key \
         <code>demo-jwt-client.pem</code> in the authz-service's data directory; \
         <code>aud</code> = <code>{url}/oauth2/token</code>) and gets a token for its \
         <code>sub</code>.</p>\
         <form method=\"post\" action=\"/jwt-bearer\">\
         <label for=\"assertion\">Signed assertion</label>\
         <textarea id=\"assertion\" name=\"assertion\" rows=\"4\" required></textarea>\
         <button id=\"start-jwt-bearer\" type=\"submit\">Exchange the assertion</button></form>\
         </section>\
         <p>Implicit and password grants are not offered: RFC 9700 retires them.</p>",
        id = escape(&demo.client_id),
        url = escape(&demo.public_url)
    );
    html(StatusCode::OK, "wasmgate demo", &body)
}

fn random(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).ok()?;
    Some(URL_SAFE_NO_PAD.encode(buf))
}

/// Starts the authorization code flow: new `state` and PKCE verifier, kept in a cookie only
/// this site can read, then off to the authorization endpoint.
async fn start(State(demo): State<Arc<Demo>>) -> Response {
    let (Some(state), Some(verifier)) = (random(16), random(32)) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "no randomness available");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = serde_urlencode(&[
        ("response_type", "code"),
        ("client_id", &demo.client_id),
        ("redirect_uri", &demo.redirect_uri()),
        ("scope", "demo"),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let location = format!("{}/oauth2/authorize?{query}", demo.public_url);
    let cookie = format!(
        "{FLOW_COOKIE}={state}.{verifier}; Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Lax"
    );
    redirect(&location, Some(&cookie))
}

fn serde_urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn redirect(location: &str, cookie: Option<&str>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn flow_cookie(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == FLOW_COOKIE)
        .and_then(|(_, v)| v.split_once('.'))
        .map(|(s, v)| (s.to_string(), v.to_string()))
}

async fn callback(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    Query(p): Query<CallbackParams>,
) -> Response {
    let mut r = callback_page(&demo, &headers, p).await;
    // The state and verifier are single use.
    let clear = format!("{FLOW_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn callback_page(demo: &Demo, headers: &HeaderMap, p: CallbackParams) -> Response {
    let Some((state, verifier)) = flow_cookie(headers) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This browser did not start a sign-in (no state cookie): start again from the home page.",
        );
    };
    if p.state.as_deref() != Some(state.as_str()) {
        tracing::warn!("callback refused: state mismatch");
        return error_page(
            StatusCode::BAD_REQUEST,
            "The state does not match the one this browser sent: the response is not for us.",
        );
    }
    // RFC 9207: the response must come from the server we sent the user to.
    if let Some(iss) = &p.iss
        && iss.trim_end_matches('/') != demo.public_url
    {
        tracing::warn!(%iss, "callback refused: unexpected issuer");
        return error_page(
            StatusCode::BAD_REQUEST,
            "The response names another authorization server (iss).",
        );
    }
    if let Some(error) = p.error {
        let body = format!(
            "<p>The authorization server answered <code id=\"oauth-error\">{}</code>: {}</p>\
             <p><a href=\"/\">Back to the home page</a></p>",
            escape(&error),
            escape(p.error_description.as_deref().unwrap_or(""))
        );
        return html(StatusCode::OK, "Authorization refused", &body);
    }
    let Some(code) = p.code else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "No code and no error in the response.",
        );
    };
    let redirect_uri = demo.redirect_uri();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    token_page(demo, "Signed in", &form, true).await
}

async fn client_credentials(State(demo): State<Arc<Demo>>) -> Response {
    let form = [("grant_type", "client_credentials"), ("scope", "demo")];
    token_page(&demo, "App token", &form, true).await
}

#[derive(Deserialize)]
struct AssertionForm {
    assertion: String,
}

async fn jwt_bearer(
    State(demo): State<Arc<Demo>>,
    axum::Form(f): axum::Form<AssertionForm>,
) -> Response {
    // The assertion authenticates its issuer: no client secret goes with it.
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", f.assertion.trim()),
        ("scope", "demo"),
    ];
    token_page(&demo, "Token for the assertion's subject", &form, false).await
}

/// Calls the token endpoint and shows the result.
async fn token_page(
    demo: &Demo,
    title: &str,
    form: &[(&str, &str)],
    authenticate: bool,
) -> Response {
    let mut req = demo.http.post(&demo.token_url).form(form);
    if authenticate {
        req = req.basic_auth(&demo.client_id, Some(&demo.client_secret));
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("token request failed: {e}");
            return error_page(
                StatusCode::BAD_GATEWAY,
                &format!("The token endpoint could not be reached: {e}"),
            );
        }
    };
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let Some(token) = body["access_token"]
        .as_str()
        .filter(|_| status.is_success())
    else {
        tracing::warn!(%status, %body, "token request refused");
        let shown = format!(
            "<p>The token endpoint answered {status}:</p><pre id=\"token-error\">{}</pre>\
             <p><a href=\"/\">Back to the home page</a></p>",
            escape(&serde_json::to_string_pretty(&body).unwrap_or_default())
        );
        return html(StatusCode::BAD_GATEWAY, "No token", &shown);
    };
    let refresh = if body["refresh_token"].is_string() {
        "<p>A refresh token came too (kept on the server side of a real app, never shown).</p>"
    } else {
        ""
    };
    let content = format!(
        "<h2>Access token</h2>\
         <textarea id=\"access-token\" rows=\"5\" aria-label=\"Access token\">{tok}</textarea>\
         <p>Type <code>{tt}</code>, expires in {exp} s, scope <code>{scope}</code>. \
         Edit it to see how the gateway refuses a bad token.</p>{refresh}\
         <h2>Decoded</h2><pre id=\"token-header\">{header}</pre><pre id=\"claims\">{claims}</pre>\
         <h2>Call the API through the gateway</h2>\
         <p><button type=\"button\" class=\"call\" id=\"call-notes\" data-path=\"/api/notes\">Call /api/notes</button>\
         <button type=\"button\" class=\"call\" id=\"call-me\" data-path=\"/me\">Call /me</button>\
         <button type=\"button\" class=\"call\" id=\"call-protected\" data-path=\"/protected\">Call /protected</button></p>\
         <pre id=\"api-result\" aria-live=\"polite\"></pre>\
         <p><a href=\"/\">Back to the home page</a></p>\
         <script src=\"/demo.js\"></script>",
        tok = escape(token),
        tt = escape(body["token_type"].as_str().unwrap_or("")),
        exp = body["expires_in"].as_i64().unwrap_or(0),
        scope = escape(body["scope"].as_str().unwrap_or("")),
        header = escape(&decoded(token, 0)),
        claims = escape(&decoded(token, 1)),
    );
    html(StatusCode::OK, title, &content)
}

/// One part of a JWT, decoded and pretty-printed (for display only: nothing is trusted here).
fn decoded(token: &str, part: usize) -> String {
    token
        .split('.')
        .nth(part)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| "(not a JWT)".to_string())
}

/// The buttons' script: calls the path with the token and shows status, the headers that
/// explain a refusal (401/403/429), and the body.
const SCRIPT: &str = r#"document.querySelectorAll('button.call').forEach(function (b) {
  b.addEventListener('click', async function () {
    var out = document.getElementById('api-result');
    var token = document.getElementById('access-token').value.trim();
    out.textContent = 'Calling ' + b.dataset.path + '...';
    try {
      var r = await fetch(b.dataset.path, { headers: { 'Authorization': 'Bearer ' + token } });
      var lines = [r.status + ' ' + r.statusText];
      ['www-authenticate', 'retry-after', 'ratelimit', 'ratelimit-policy', 'x-ratelimit-remaining']
        .forEach(function (h) { var v = r.headers.get(h); if (v) { lines.push(h + ': ' + v); } });
      var text = await r.text();
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
      out.textContent = lines.join('\n') + '\n\n' + text;
      out.dataset.status = String(r.status);
    } catch (e) {
      out.textContent = 'The call failed: ' + e;
    }
  });
});
"#;

async fn script() -> Response {
    let mut r = SCRIPT.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    r
}

fn error_page(status: StatusCode, message: &str) -> Response {
    html(
        status,
        "Something is wrong",
        &format!(
            "<p role=\"alert\" id=\"demo-error\">{}</p><p><a href=\"/\">Back to the home page</a></p>",
            escape(message)
        ),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;\
padding:0 1rem;color:#1c1e21}section{border:1px solid #ccd;border-radius:8px;padding:0 1rem 1rem;\
margin:1rem 0}textarea{width:100%;font-family:monospace}pre{background:#f4f4f8;padding:.6rem;\
overflow:auto}a.button,button{display:inline-block;padding:.5rem 1rem;border-radius:4px;\
border:1px solid #1a5fb4;background:#1a5fb4;color:#fff;text-decoration:none;font-size:1rem;\
margin:.3rem .3rem 0 0;cursor:pointer}:focus-visible{outline:3px solid #f5a623;outline-offset:2px}\
label{display:block;font-weight:600;margin:.5rem 0}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

/// HTML-escapes text placed in a page.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_parts_are_decoded_for_display() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"at+jwt"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"bob"}"#);
        let token = format!("{header}.{claims}.sig");
        assert!(decoded(&token, 0).contains("\"typ\": \"at+jwt\""));
        assert!(decoded(&token, 1).contains("\"sub\": \"bob\""));
        assert_eq!(decoded("garbage", 1), "(not a JWT)");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            serde_urlencode(&[("a", "x y&z"), ("b", "https://h/cb")]),
            "a=x%20y%26z&b=https%3A%2F%2Fh%2Fcb"
        );
    }

    #[test]
    fn the_flow_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; __Host-demo-flow=st.ver"),
        );
        assert_eq!(flow_cookie(&h), Some(("st".into(), "ver".into())));
        assert_eq!(flow_cookie(&HeaderMap::new()), None);
    }

    /// A stand-in token endpoint: records each request's Authorization header and form, and
    /// answers `status` with `body`.
    async fn token_endpoint(
        status: u16,
        body: Value,
    ) -> (String, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = Router::new().route(
            "/token",
            post(move |headers: HeaderMap, form: String| {
                let record = record.clone();
                let body = body.clone();
                async move {
                    let auth = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    record.lock().unwrap().push((auth, form));
                    (StatusCode::from_u16(status).unwrap(), body.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// The demo pages on a free port, exchanging codes at `token_url`.
    async fn demo(token_url: String) -> String {
        let app = routes(Demo {
            public_url: "https://gw.test".into(),
            token_url,
            client_id: "123".into(),
            client_secret: "secret".into(),
            http: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn browser() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap()
    }

    fn query_of(url: &str) -> std::collections::HashMap<String, String> {
        let q = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/")))
            .collect()
    }

    fn jwt(claims: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"at+jwt"}"#);
        format!("{h}.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[tokio::test]
    async fn start_then_callback_exchanges_the_code_with_the_verifier() {
        let token = jwt(r#"{"sub":"bob","client_id":"123"}"#);
        let (token_url, seen) = token_endpoint(
            200,
            serde_json::json!({"access_token": token, "token_type": "Bearer",
                               "expires_in": 3600, "scope": "demo", "refresh_token": "r"}),
        )
        .await;
        let base = demo(token_url).await;
        let b = browser();

        let r = b.get(format!("{base}/start")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            location.starts_with("https://gw.test/oauth2/authorize?"),
            "{location}"
        );
        let q = query_of(&location);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["redirect_uri"], "https://gw.test/callback");
        assert_eq!(q["code_challenge_method"], "S256");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        for attr in ["HttpOnly", "Secure", "SameSite=Lax"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        let pair = cookie.split(';').next().unwrap().to_string();
        let (state, verifier) = pair
            .trim_start_matches("__Host-demo-flow=")
            .split_once('.')
            .unwrap();
        assert_eq!(q["state"], state);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        assert_eq!(q["code_challenge"], challenge, "S256 of the kept verifier");

        let r = b
            .get(format!(
                "{base}/callback?code=the-code&state={state}&iss=https%3A%2F%2Fgw.test"
            ))
            .header(header::COOKIE, &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(page.contains("&quot;sub&quot;: &quot;bob&quot;"), "{page}");
        assert!(page.contains("id=\"call-notes\""));
        let (auth, form) = seen.lock().unwrap()[0].clone();
        assert_eq!(
            auth, "Basic MTIzOnNlY3JldA==",
            "client_secret_basic for 123:secret"
        );
        assert!(form.contains("grant_type=authorization_code"), "{form}");
        assert!(form.contains("code=the-code"), "{form}");
        assert!(
            form.contains(&format!("code_verifier={verifier}")),
            "{form}"
        );
        assert!(
            form.contains("redirect_uri=https%3A%2F%2Fgw.test%2Fcallback"),
            "{form}"
        );
    }

    #[tokio::test]
    async fn callback_refuses_foreign_responses_and_shows_errors() {
        let (token_url, seen) = token_endpoint(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "spent"}),
        )
        .await;
        let base = demo(token_url).await;
        let b = browser();
        let get = |path: &str, cookie: Option<&str>| {
            let mut req = b.get(format!("{base}{path}"));
            if let Some(c) = cookie {
                req = req.header(header::COOKIE, c);
            }
            req.send()
        };
        let cookie = Some("__Host-demo-flow=st.verifier");
        // No flow started in this browser, another state, another issuer: refused, no exchange.
        for (path, cookie) in [
            ("/callback?code=c&state=st", None),
            ("/callback?code=c&state=other", cookie),
            (
                "/callback?code=c&state=st&iss=https%3A%2F%2Fevil.test",
                cookie,
            ),
            ("/callback?state=st", cookie),
        ] {
            let r = get(path, cookie).await.unwrap();
            assert_eq!(r.status(), 400, "{path}");
        }
        assert!(seen.lock().unwrap().is_empty(), "nothing was exchanged");
        // An error from the authorization server is shown.
        let r = get(
            "/callback?error=access_denied&error_description=no&state=st&iss=https%3A%2F%2Fgw.test",
            cookie,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains(">access_denied<"));
        // A refused exchange shows the token endpoint's answer.
        let r = get("/callback?code=c&state=st", cookie).await.unwrap();
        assert_eq!(r.status(), 502);
        assert!(r.text().await.unwrap().contains("invalid_grant"));
    }
}
