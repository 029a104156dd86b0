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

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// How long a test waits for the filters' counters to reach Envoy: they hand them over on a
/// one-second tick (docs/filters/*.md, "Metrics").
pub const COUNTERS_FLUSHED_WITHIN: Duration = Duration::from_secs(5);

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

/// Envoy's admin `/stats` text (`query` as in `?filter=bearer_auth`, or empty), read again every
/// 100 ms until `flushed` holds for it or [`COUNTERS_FLUSHED_WITHIN`] has passed; the last text
/// read either way, so the test's own assertions say what was missing.
pub async fn stats_once(stack: &Stack, query: &str, flushed: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + COUNTERS_FLUSHED_WITHIN;
    loop {
        let url = stack.admin_url(&format!("/stats{query}"));
        // A failed read is an empty text: the next round tries again.
        let stats = match reqwest::get(url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if flushed(&stats) || Instant::now() >= deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of every stat in Envoy's `/stats` text whose name ends with `name` (a counter is
/// reported per worker's VM under one name, or under several prefixes): 0 if none is there.
pub fn sum_stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.ends_with(name))
        .map(|(_, v)| v.trim().parse::<u64>().unwrap_or(0))
        .sum()
}
