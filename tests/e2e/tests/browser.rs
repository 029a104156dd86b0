//! The seed's demo in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver), through the real stack (Envoy with the filters, the authz-service, the demo
//! client and API) at `https://localhost:<port>/`, with TLS trusted the way a user trusts a
//! local CA: the dev CA added to an NSS database in the browser's own `$HOME` (no flag that
//! turns certificate checks off).
//!
//! Home → "Sign in" → login as bob → Allow → callback with the token → "Call /api/notes" shows
//! the notes; then the Deny path. Once with the gateway's three filters, once with the
//! one-module chain in their place. A screenshot of each page goes to
//! `.run/<run>/screenshots/`. Needs `chromium`, `chromium-driver` and `libnss3-tools`.

// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmgate_e2e::{Stack, StackOptions, client_credentials_token};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// W3C WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver process and one browser session. Chromedriver runs as the first process of a
/// PID namespace of its own (`unshare --pid --fork --kill-child`): whatever it or Chromium signal
/// stays inside that namespace, and when `unshare` dies the kernel ends every process in it.
/// Twice, on this machine, a run of this test ended with every process of the machine killed
/// (CI and the shell that started it included); the namespace keeps any such signal inside.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    shots: PathBuf,
    shot_count: u32,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `unshare` passes SIGKILL on to the namespace's first process (`--kill-child`), and the
        // kernel then kills everything else in the namespace.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh `$HOME` whose NSS database trusts the dev CA for TLS servers (`C,,`), which is where
/// Chromium on Linux looks for locally added trust anchors.
fn home_trusting(ca_cert: &Path, home: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new("certutil").args(args).output().expect(
            "certutil is needed (Debian package libnss3-tools) to trust the dev CA in the browser",
        );
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-N", "-d", &db_arg, "--empty-password"]);
    run(&[
        "-A",
        "-d",
        &db_arg,
        "-n",
        "wasmgate dev CA",
        "-t",
        "C,,",
        "-i",
        ca_cert.to_str().unwrap(),
    ]);
}

impl Browser {
    async fn start(ca_cert: &Path, dir: &Path, shots: PathBuf) -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: apt-get install -y chromium chromium-driver libnss3-tools"
            );
        }
        let home = dir.join("home");
        let _ = STEPS_LOG.set(dir.join("steps.log"));
        home_trusting(ca_cert, &home);
        std::fs::create_dir_all(&shots).unwrap();
        let port = free_port();
        let driver = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--", CHROMEDRIVER])
            .arg(format!("--port={port}"))
            .env("HOME", &home)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("chromedriver.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("start chromedriver in a PID namespace of its own (util-linux unshare)");
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            shots,
            shot_count: 0,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = b.http.get(format!("{}/status", b.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = dir.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1200,1000",
                    "--disable-crash-reporter", "--disable-breakpad",
                    // Nothing but loopback: no name but localhost resolves, no proxy, and the
                    // features that reach out on their own (Cast discovery multicasts, hints,
                    // translation, DNS over HTTPS, reporting) are off.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
                    "--no-proxy-server", "--no-pings", "--disable-domain-reliability",
                    "--disable-client-side-phishing-detection", "--disable-default-apps",
                    "--disable-extensions", "--metrics-recording-only",
                    "--disable-features=MediaRouter,DialMediaRouteProvider,OptimizationHints,\
                     Translate,DnsOverHttps,AutofillServerCommunication,\
                     CertificateTransparencyComponentUpdater",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        progress("new session");
        let v = b.call("POST", "/session", Some(caps)).await;
        progress("session created");
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver command; returns its `value`, failing with the driver's error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        progress(&format!("goto {url}"));
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn try_find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let resp = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .ok()?;
        let v: Value = resp.json().await.ok()?;
        v["value"][ELEMENT].as_str().map(str::to_string)
    }

    /// Waits until the element is on the page.
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                let source = self.call("GET", "/source", None).await;
                panic!(
                    "no `{css}` at {} after {WAIT:?}; page:\n{}",
                    self.url().await,
                    source.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        progress(&format!("click {css}"));
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/click"), None)
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn clear(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/clear"), None)
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call("GET", &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn title(&self) -> String {
        self.call("GET", "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the URL's path starts with `path`.
    async fn wait_for_path(&self, origin: &str, path: &str) {
        let want = format!("{origin}{path}");
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if url.starts_with(&want) {
                return;
            }
            if Instant::now() > deadline {
                let source = self.call("GET", "/source", None).await;
                panic!(
                    "still at {url}, expected {want}; page:\n{}",
                    source.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element's text satisfies `ok`.
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.text(css).await;
            if ok(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "`{css}` never got there: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&mut self, name: &str) {
        let png = self.call("GET", "/screenshot", None).await;
        let bytes = base64_decode(png.as_str().unwrap());
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        self.shot_count += 1;
        let path = self
            .shots
            .join(format!("{:02}-{name}.png", self.shot_count));
        std::fs::write(path, bytes).unwrap();
    }

    async fn delete_cookies(&self) {
        self.call("DELETE", "/cookie", None).await;
    }

    async fn quit(&self) {
        self.call("DELETE", "", None).await;
    }
}

/// Where `progress` writes (the run directory's `browser/steps.log`).
static STEPS_LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Each browser step, so a hung or failed run shows where it stopped.
fn progress(what: &str) {
    use std::io::Write;
    let Some(path) = STEPS_LOG.get() else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{what}");
    }
}

/// Standard base64 (the screenshot encoding), without a dependency for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 character {c}"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..data.len()]);
    }
    out
}

/// Each walk-through, bounded: a browser that hangs fails the test (and its drop stops the
/// stack and the browser) instead of holding CI until its own time-out.
const WHOLE_TEST: Duration = Duration::from_secs(300);

/// The walk-through twice, one stack after the other: the gateway's three filters, then the same
/// filters as the stages of the one-module chain (`cargo xtask up --chain`).
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_in_a_real_browser() {
    // The demo client exchanges the code at the gateway's token endpoint over HTTPS, so it must
    // trust the dev CA too. It reads DEMO_CA_CERT, inherited from here until the stack passes it.
    if std::env::var_os("DEMO_CA_CERT").is_none() {
        let ca = xtask::paths::certs_dir().join("ca.crt");
        // SAFETY: this binary's only test sets it before starting any thread that reads the
        // environment (the stack's processes are spawned after).
        unsafe { std::env::set_var("DEMO_CA_CERT", ca) };
    }
    for options in [
        StackOptions::for_test("browser"),
        StackOptions::for_test("browser-chain").one_module(),
    ] {
        let name = options.run_name.clone();
        tokio::time::timeout(WHOLE_TEST, walk_through_the_demo(options))
            .await
            .unwrap_or_else(|_| panic!("{name}: the walk-through took over {WHOLE_TEST:?}"));
    }
}

async fn walk_through_the_demo(options: StackOptions) {
    let mut stack = Stack::start(options).await.unwrap();
    let origin = stack.https_url("");
    let shots = stack.run_dir.join("screenshots");
    let work = stack.run_dir.join("browser");
    let mut b = Browser::start(&stack.certs.ca_cert, &work, shots.clone()).await;

    // A note to find, created through the gateway with an app token.
    let app_token = client_credentials_token(&stack, "demo").await.unwrap();
    let created = stack
        .https_client()
        .unwrap()
        .post(stack.https_url("/api/notes"))
        .bearer_auth(&app_token)
        .json(&json!({"title": "written before the browser came", "content": "hello bob"}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    // Home: each grant on offer.
    b.goto(&format!("{origin}/")).await;
    b.find("#start-code").await;
    assert_eq!(b.title().await, "wasmgate demo");
    for id in ["#start-client-credentials", "#start-jwt-bearer"] {
        b.find(id).await;
    }
    b.screenshot("home").await;

    // Authorization code + PKCE: login, consent, callback.
    b.click("#start-code").await;
    b.wait_for_path(&origin, "/login?").await;
    b.find("#username").await;
    b.screenshot("login").await;
    b.type_into("#username", "bob").await;
    b.type_into("#password", "secret").await;
    b.click("#sign-in").await;
    b.wait_for_path(&origin, "/consent?").await;
    let consent = b.text("main").await;
    assert!(
        consent.contains("123") && consent.contains("demo"),
        "{consent}"
    );
    b.screenshot("consent").await;
    b.click("#allow").await;
    b.wait_for_path(&origin, "/callback?").await;
    let claims = b.text("#claims").await;
    assert!(claims.contains("\"sub\": \"bob\""), "{claims}");
    assert!(claims.contains("\"client_id\": \"123\""), "{claims}");
    assert!(
        claims.contains(&format!("\"iss\": \"{origin}\"")),
        "{claims}"
    );
    assert!(b.text("#token-header").await.contains("at+jwt"));
    b.screenshot("callback").await;

    // The API through the gateway, with the user's token.
    b.click("#call-notes").await;
    let result = b
        .wait_text("#api-result", |t| !t.starts_with("Calling"))
        .await;
    assert!(result.starts_with("200"), "{result}");
    assert!(
        result.contains("written before the browser came"),
        "{result}"
    );
    b.screenshot("api-notes").await;
    b.click("#call-me").await;
    let me = b
        .wait_text("#api-result", |t| !t.starts_with("Calling") && t != result)
        .await;
    assert!(me.starts_with("200") && me.contains("bob"), "{me}");
    b.screenshot("api-me").await;

    // Deny, from a fresh sign-in: the client gets access_denied and no token.
    b.delete_cookies().await;
    b.goto(&format!("{origin}/")).await;
    b.click("#start-code").await;
    b.wait_for_path(&origin, "/login?").await;
    // Keyboard only this time: the username field has focus, Tab moves on, Enter submits.
    let focused = b.call("GET", "/element/active", None).await;
    assert_eq!(
        focused[ELEMENT].as_str(),
        Some(b.find("#username").await.as_str()),
        "the username field has focus on load"
    );
    b.type_into("#username", "bob").await;
    b.type_into("#password", "secret\u{E007}").await;
    b.wait_for_path(&origin, "/consent?").await;
    b.click("#deny").await;
    b.wait_for_path(&origin, "/callback?").await;
    assert_eq!(b.text("#oauth-error").await, "access_denied");
    assert!(b.try_find("#access-token").await.is_none());
    b.screenshot("denied").await;

    // Client credentials from the home page: the app's own token, then /protected with it, then
    // a spoiled token, which the gateway refuses with RFC 6750's 401 and the page shows.
    b.goto(&format!("{origin}/")).await;
    b.click("#start-client-credentials").await;
    let claims = b.text("#claims").await;
    assert!(claims.contains("\"sub\": \"123\""), "{claims}");
    b.screenshot("client-credentials").await;
    b.click("#call-protected").await;
    let protected = b
        .wait_text("#api-result", |t| {
            !t.is_empty() && !t.starts_with("Calling")
        })
        .await;
    assert!(protected.starts_with("200"), "{protected}");
    b.clear("#access-token").await;
    b.type_into("#access-token", "not-a-token").await;
    b.click("#call-notes").await;
    let refused = b.wait_text("#api-result", |t| t.starts_with("401")).await;
    assert!(refused.contains("www-authenticate: Bearer"), "{refused}");
    b.screenshot("api-401").await;

    b.quit().await;
    drop(b);
    assert_eq!(stack.crashed(), None, "a process of the stack crashed");
    let saved = std::fs::read_dir(&shots).unwrap().count();
    assert_eq!(saved, 9, "one screenshot per page in {}", shots.display());
}
