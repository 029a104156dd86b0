//! Support for the end-to-end tests: the stack launcher shared with `cargo xtask up`, and small
//! helpers every test needs (tokens, identity). Tests live in `tests/`, one file per area.
//!
//! A test starts its own stack on free loopback ports:
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wasmgate_e2e::{Stack, StackOptions};
//! let stack = Stack::start(StackOptions::for_test("my_test")).await?;
//! let response = stack.https_client()?.get(stack.https_url("/api/notes")).send().await?;
//! # Ok(()) }
//! ```
//! Dropping the stack stops every process it started; their logs stay under `.run/<run name>/`.

pub use xtask::process::pid_is_alive;
pub use xtask::render::Endpoints;
pub use xtask::stack::{Stack, StackOptions, https_client_trusting};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The demo client of DESIGN.md.
pub const DEMO_CLIENT_ID: &str = "123";
pub const DEMO_CLIENT_SECRET: &str = "secret";

/// Gets an access token through the gateway with `client_credentials` (client_secret_basic).
pub async fn client_credentials_token(stack: &Stack, scope: &str) -> Result<String> {
    let response = stack
        .https_client()?
        .post(stack.https_url("/oauth2/token"))
        .basic_auth(DEMO_CLIENT_ID, Some(DEMO_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .context("token request failed")?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .context("token response is not JSON")?;
    if !status.is_success() {
        bail!("token endpoint answered {status}: {body}");
    }
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no access_token in {body}"))
}
