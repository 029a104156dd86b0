//! The authz-service: started for the gateway benchmark (it mints the one token every
//! configuration is driven with, and serves the JWKS both jwt_authn and bearer-auth fetch), and
//! measured on its own: start-up time, `client_credentials` tokens per second with a client
//! secret and with `private_key_jwt`, and its memory.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rcgen::{KeyPair, SigningKey};
use serde_json::{Value, json};
use xtask::process::{Echo, ManagedProcess};

use crate::bench::cpus::pinned;
use crate::bench::wrk::{self, Load, Outcome};
use crate::bench::{b64, http, procstat};

/// The demo client of DESIGN.md and its secret.
pub const DEMO_CLIENT: (&str, &str) = ("123", "secret");
/// The demo client that authenticates with `private_key_jwt` (key in the data dir).
const JWT_CLIENT: &str = "jwt-demo";
const JWT_CLIENT_KEY_FILE: &str = "demo-jwt-client.pem";
const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

pub struct Authz {
    pub process: ManagedProcess,
    pub addr: SocketAddr,
    pub issuer: String,
    pub data_dir: PathBuf,
    /// From spawn to the first `200` of `/healthz`.
    pub startup: Duration,
}

/// Starts `binary` with the demo data and waits for `/healthz`.
pub fn start(
    binary: &Path,
    port: u16,
    issuer: &str,
    data_dir: &Path,
    cpu: Option<usize>,
    log: &Path,
) -> Result<Authz> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = pinned(cpu, binary);
    command
        .args([
            "--listen",
            &addr.to_string(),
            "--issuer",
            issuer,
            "--data-dir",
        ])
        .arg(data_dir)
        .arg("--demo")
        .env("RUST_LOG", "warn");
    let started = Instant::now();
    let mut process = ManagedProcess::spawn("authz", command, log, Echo::Quiet)?;
    loop {
        if let Ok(r) = http::request(addr, "GET", "/healthz", &[], "", Duration::from_secs(1))
            && r.status == 200
        {
            let startup = started.elapsed();
            return Ok(Authz {
                process,
                addr,
                issuer: issuer.to_owned(),
                data_dir: data_dir.to_owned(),
                startup,
            });
        }
        if let Some(status) = process.exited() {
            bail!("authz-service exited ({status}): {}", process.log());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("authz-service not healthy within 30 s: {}", process.log());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn basic_credential() -> String {
    format!(
        "Basic {}",
        b64::standard(format!("{}:{}", DEMO_CLIENT.0, DEMO_CLIENT.1).as_bytes())
    )
}

const SECRET_BODY: &str = "grant_type=client_credentials&scope=demo";

/// A `client_credentials` token for the demo client with scope `demo`.
pub fn mint_token(authz: &Authz) -> Result<String> {
    let auth = basic_credential();
    let r = http::request(
        authz.addr,
        "POST",
        "/oauth2/token",
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        SECRET_BODY,
        Duration::from_secs(10),
    )?;
    if r.status != 200 {
        bail!("the token endpoint answered {}: {}", r.status, r.body);
    }
    let v: Value = serde_json::from_str(&r.body).context("token response is not JSON")?;
    v.get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("token response without access_token")
}

/// The signed part of a JWT: header and claims, base64url.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64::url_safe(header.to_string().as_bytes()),
        b64::url_safe(claims.to_string().as_bytes())
    )
}

/// Writes `count` token request bodies, each with a fresh single-use `private_key_jwt` assertion
/// (RFC 7523 §2.2) signed by the demo JWT client's key, one per line.
pub fn write_assertion_bodies(authz: &Authz, count: usize, path: &Path) -> Result<()> {
    let key_path = authz.data_dir.join(JWT_CLIENT_KEY_FILE);
    let pem = fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read the demo JWT client key {}", key_path.display()))?;
    let key = KeyPair::from_pem(&pem).context("the demo JWT client key is not a usable key")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let header = json!({"alg": "EdDSA", "typ": "JWT"});
    let audience = format!("{}/oauth2/token", authz.issuer);
    let mut out = String::with_capacity(count * 400);
    for i in 0..count {
        let claims = json!({
            "iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": audience,
            "iat": now, "exp": now + 1800, "jti": format!("bench-{now}-{i}"),
        });
        let input = signing_input(&header, &claims);
        let signature = key.sign(input.as_bytes()).context("signing an assertion")?;
        let _ = writeln!(
            out,
            "grant_type=client_credentials&scope=demo&client_assertion_type={ASSERTION_TYPE}\
             &client_assertion={input}.{}",
            b64::url_safe(&signature)
        );
    }
    fs::write(path, out)?;
    Ok(())
}

/// Checks one assertion body is accepted before the load run uses the others.
pub fn check_assertion_body(authz: &Authz, body: &str) -> Result<()> {
    let r = http::request(
        authz.addr,
        "POST",
        "/oauth2/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        body,
        Duration::from_secs(10),
    )?;
    if r.status != 200 {
        bail!(
            "a private_key_jwt token request got {}: {}",
            r.status,
            r.body
        );
    }
    Ok(())
}

/// How the token load is sent.
pub enum Method<'a> {
    Secret,
    /// A file of single-use bodies.
    PrivateKeyJwt(&'a Path),
}

/// Drives the token endpoint with `connections` for `duration`.
pub fn token_load(
    authz: &Authz,
    method: Method<'_>,
    connections: u32,
    duration: Duration,
    cpu: Option<usize>,
    script: &Path,
) -> Result<Outcome> {
    let mut headers = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let (body, bodies) = match method {
        Method::Secret => {
            headers.push(("authorization".to_owned(), basic_credential()));
            (Some(SECRET_BODY.to_owned()), None)
        }
        Method::PrivateKeyJwt(path) => (None, Some(path.to_owned())),
    };
    let load = Load {
        url: format!("http://{}/oauth2/token", authz.addr),
        headers,
        connections,
        duration,
        delay_ms: None,
        bodies,
        body,
        cpu,
    };
    wrk::run(&load, script)
}

/// Memory of the running service.
pub fn memory(authz: &Authz) -> Result<procstat::Memory> {
    procstat::memory(authz.process.pid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_input_is_header_dot_claims_in_base64url() {
        let input = signing_input(&json!({"alg": "EdDSA"}), &json!({"sub": "x"}));
        assert_eq!(input, "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0");
    }

    #[test]
    fn the_basic_credential_is_the_demo_client_s() {
        assert_eq!(basic_credential(), "Basic MTIzOnNlY3JldA==");
    }
}
