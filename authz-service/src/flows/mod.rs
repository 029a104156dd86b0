//! The browser flows (RFC 6749 §4.1 with PKCE, as RFC 9700 and OAuth 2.1 ask): the
//! authorization endpoint, login and consent pages, authorization codes, refresh-token rotation,
//! introspection (RFC 7662) and revocation (RFC 7009).
//!
//! Layout: `authorize` validates an authorization request; `session` and `login` handle who is
//! signed in; `consent` remembers decisions; `code_grant` and `refresh_grant` are the token
//! endpoint's grants; `tokens` issues an access + refresh token pair for a grant; `verify`
//! checks our own access tokens for `introspect` and `revoke`; `pages` renders HTML and `web` is
//! the thin HTTP front of the pages.

pub mod authorize;
pub mod code_grant;
pub mod consent;
pub mod introspect;
pub mod login;
pub mod pages;
pub mod pkce;
pub mod refresh_grant;
pub mod revoke;
pub mod session;
pub mod signer;
pub mod tokens;
pub mod verify;
pub mod web;

#[cfg(test)]
mod tests;

use serde::Deserialize;

use crate::storage::Storage;
use crate::throttle::Throttle;

/// Name of the stored key that sessions, CSRF tokens and pending requests are signed with.
const SIGNING_KEY_SETTING: &str = "browser_hmac_key";

/// Settings of the browser flows (`[browser]` in the configuration file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrowserConfig {
    /// Authorization code lifetime; RFC 9700 §4.5.3 and OAuth 2.1 want it short (at most 60 s).
    pub code_lifetime_secs: i64,
    /// Lifetime of each refresh token (a rotated one gets a fresh lifetime).
    pub refresh_token_lifetime_secs: i64,
    /// How long a login lasts before the user must sign in again.
    pub session_lifetime_secs: i64,
    /// How long a user has to sign in and decide after the client sent them.
    pub request_lifetime_secs: i64,
    /// Failed logins allowed per user in the window.
    pub login_failure_limit: u32,
    /// Failed logins allowed per caller address in the window (higher: many users can share one).
    pub login_ip_failure_limit: u32,
    pub login_failure_window_secs: i64,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            code_lifetime_secs: 60,
            refresh_token_lifetime_secs: 30 * 24 * 3600,
            session_lifetime_secs: 8 * 3600,
            request_lifetime_secs: 600,
            login_failure_limit: 5,
            login_ip_failure_limit: 50,
            login_failure_window_secs: 300,
        }
    }
}

impl BrowserConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.code_lifetime_secs) {
            return Err("browser.code_lifetime_secs must be between 1 and 60".into());
        }
        if self.refresh_token_lifetime_secs <= 0
            || self.session_lifetime_secs <= 0
            || self.request_lifetime_secs <= 0
        {
            return Err(
                "browser.refresh_token_lifetime_secs, session_lifetime_secs and \
                 request_lifetime_secs must be positive"
                    .into(),
            );
        }
        if self.login_failure_limit == 0
            || self.login_ip_failure_limit == 0
            || self.login_failure_window_secs <= 0
        {
            return Err("browser.login_failure_* settings must be positive".into());
        }
        Ok(())
    }
}

/// State of the browser flows kept for the life of the process.
pub struct FlowState {
    pub signer: signer::Signer,
    pub user_throttle: Throttle,
    pub ip_throttle: Throttle,
}

impl FlowState {
    pub fn new(config: &BrowserConfig, storage: &dyn Storage) -> anyhow::Result<FlowState> {
        let key = storage.secret_setting(SIGNING_KEY_SETTING, &|| {
            crate::secrets::random_bytes(32).unwrap_or_default()
        })?;
        if key.len() < 32 {
            anyhow::bail!("the stored browser signing key is too short");
        }
        Ok(FlowState {
            signer: signer::Signer::new(key),
            user_throttle: Throttle::new(
                config.login_failure_limit,
                config.login_failure_window_secs,
            ),
            ip_throttle: Throttle::new(
                config.login_ip_failure_limit,
                config.login_failure_window_secs,
            ),
        })
    }
}
