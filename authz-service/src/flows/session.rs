//! Who is signed in, and CSRF protection for the forms.
//!
//! The session is a signed cookie (`Secure`, `HttpOnly`, `SameSite=Lax`, `__Host-` prefix so no
//! subdomain can set it). CSRF: a random cookie plus, in each form, an HMAC of it; a cross-site
//! page can neither read the cookie nor compute the tag (the synchronizer pattern without
//! server-side state).

use serde::{Deserialize, Serialize};

use crate::service::Authz;

pub const SESSION_COOKIE: &str = "__Host-wasmgate-session";
pub const CSRF_COOKIE: &str = "__Host-wasmgate-csrf";
const SESSION_PURPOSE: &str = "session";
const CSRF_PURPOSE: &str = "csrf";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub subject: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value with the attributes every cookie of ours carries.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_secs}; Secure; HttpOnly; SameSite=Lax")
}

/// Start a session for `subject`; returns the `Set-Cookie` value.
pub fn start(authz: &Authz, subject: &str) -> Option<String> {
    let now = authz.clock.now();
    let lifetime = authz.config.browser.session_lifetime_secs;
    let s = Session {
        subject: subject.to_string(),
        auth_time: now,
        expires_at: now.saturating_add(lifetime),
    };
    let sealed = authz.flows.signer.seal(SESSION_PURPOSE, &s)?;
    Some(set_cookie(SESSION_COOKIE, &sealed, lifetime))
}

/// The current session, if the cookie is ours, unexpired, and its user still exists.
pub fn current(authz: &Authz, cookie_header: Option<&str>) -> Option<Session> {
    let sealed = cookie(cookie_header, SESSION_COOKIE)?;
    let s: Session = authz.flows.signer.open(SESSION_PURPOSE, sealed)?;
    if s.expires_at <= authz.clock.now() {
        return None;
    }
    match authz.storage.user(&s.subject) {
        Ok(Some(_)) => Some(s),
        _ => None,
    }
}

/// The CSRF cookie value to use: the caller's, or a new one (then also returned for
/// `Set-Cookie`).
pub fn csrf_cookie(cookie_header: Option<&str>) -> (String, Option<String>) {
    match cookie(cookie_header, CSRF_COOKIE) {
        Some(v) if v.len() >= 22 && v.len() <= 64 => (v.to_string(), None),
        _ => {
            let v = crate::secrets::random_token(24).unwrap_or_default();
            let set = set_cookie(CSRF_COOKIE, &v, 24 * 3600);
            (v, Some(set))
        }
    }
}

/// The token a form must carry for the given CSRF cookie.
pub fn csrf_token(authz: &Authz, csrf_cookie: &str) -> String {
    authz.flows.signer.tag(CSRF_PURPOSE, csrf_cookie)
}

/// Whether a form's token matches the caller's CSRF cookie.
pub fn csrf_ok(authz: &Authz, cookie_header: Option<&str>, token: Option<&str>) -> bool {
    match (cookie(cookie_header, CSRF_COOKIE), token) {
        (Some(c), Some(t)) if !c.is_empty() => authz.flows.signer.check_tag(CSRF_PURPOSE, c, t),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = Some("a=1; __Host-wasmgate-session=xyz; b=");
        assert_eq!(cookie(h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(h, "b"), None);
        assert_eq!(cookie(h, "__Host-wasmgate"), None);
        assert_eq!(cookie(None, "a"), None);
        let set = set_cookie("n", "v", 5);
        for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
    }
}
