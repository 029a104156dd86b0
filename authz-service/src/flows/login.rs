//! Password check for the login page, throttled per user and per caller address so a guesser
//! gets a handful of tries, not millions.

use std::net::IpAddr;
use std::sync::OnceLock;

use crate::service::Authz;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Too many failures lately; wait this many seconds.
    Throttled(u64),
    BadCredentials,
    Unavailable,
}

/// A hash to check against when the user does not exist, so the answer takes as long as for a
/// real user and timing does not reveal which usernames exist.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| crate::secrets::hash_password("not a real password").unwrap_or_default())
}

/// Check `username`/`password`, counting a failure against the user and the address.
pub fn check(
    authz: &Authz,
    username: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<(), LoginError> {
    let now = authz.clock.now();
    let flows = &authz.flows;
    let user_key = format!("user:{username}");
    let ip_key = ip.map(|ip| format!("ip:{ip}"));
    let wait = [
        flows.user_throttle.retry_after(&user_key, now),
        ip_key
            .as_deref()
            .and_then(|k| flows.ip_throttle.retry_after(k, now)),
    ]
    .into_iter()
    .flatten()
    .max();
    if let Some(wait) = wait {
        return Err(LoginError::Throttled(wait));
    }
    let user = authz.storage.user(username).map_err(|e| {
        tracing::error!("storage error: {e}");
        LoginError::Unavailable
    })?;
    let hash = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_string(), |u| u.password_hash.clone());
    let ok = crate::secrets::verify_password(password, &hash) && user.is_some();
    if ok {
        return Ok(());
    }
    flows.user_throttle.record_failure(&user_key, now);
    if let Some(k) = &ip_key {
        flows.ip_throttle.record_failure(k, now);
    }
    Err(LoginError::BadCredentials)
}
