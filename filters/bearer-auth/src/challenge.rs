//! The answers RFC 6750 §3 prescribes, built as plain values for the adapter to send.

use serde_json::json;

use crate::extract::RequestError;
use crate::verify::TokenError;

/// Why a request is not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credentials at all (or another scheme): 401 with no error code.
    NoToken,
    InvalidRequest(RequestError),
    InvalidToken(TokenError),
    InsufficientScope(Vec<String>),
    /// No key set yet: an unverified request never passes; try again shortly.
    KeysUnavailable {
        retry_after_seconds: u64,
    },
}

impl Denial {
    /// Label for metrics and the log line.
    pub fn label(&self) -> &'static str {
        match self {
            Denial::NoToken => "missing_token",
            Denial::InvalidRequest(_) => "invalid_request",
            Denial::InvalidToken(e) => e.label(),
            Denial::InsufficientScope(_) => "insufficient_scope",
            Denial::KeysUnavailable { .. } => "keys_unavailable",
        }
    }

    /// The reason in words, for the log (never contains the token).
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NoToken => "no access token",
            Denial::InvalidRequest(e) => e.description(),
            Denial::InvalidToken(e) => e.description(),
            Denial::InsufficientScope(_) => "the token lacks a required scope",
            Denial::KeysUnavailable { .. } => "no signing keys available yet",
        }
    }
}

/// A local response for the adapter to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn respond(denial: &Denial, realm: &str) -> Response {
    let (status, error, description, scope) = match denial {
        Denial::NoToken => (401, None, "this resource needs an access token", None),
        Denial::InvalidRequest(e) => (400, Some("invalid_request"), e.description(), None),
        Denial::InvalidToken(e) => (401, Some("invalid_token"), e.description(), None),
        Denial::InsufficientScope(scopes) => (
            403,
            Some("insufficient_scope"),
            "the access token lacks a required scope",
            Some(scopes.join(" ")),
        ),
        Denial::KeysUnavailable {
            retry_after_seconds,
        } => {
            let body = json!({
                "error": "temporarily_unavailable",
                "error_description": "the signing keys are not available yet, retry shortly",
            });
            return Response {
                status: 503,
                headers: vec![
                    (
                        "retry-after".into(),
                        retry_after_seconds.max(&1).to_string(),
                    ),
                    ("content-type".into(), "application/json".into()),
                    ("cache-control".into(), "no-store".into()),
                ],
                body: body.to_string().into_bytes(),
            };
        }
    };
    // Descriptions are our fixed strings and the realm and scopes are validated at configure
    // time, so nothing here needs quoting beyond the surrounding quotes.
    let mut challenge = format!("Bearer realm=\"{realm}\"");
    let mut body = serde_json::Map::new();
    if let Some(error) = error {
        challenge.push_str(&format!(
            ", error=\"{error}\", error_description=\"{description}\""
        ));
        body.insert("error".into(), error.into());
    }
    body.insert("error_description".into(), description.into());
    if let Some(scope) = scope {
        challenge.push_str(&format!(", scope=\"{scope}\""));
        body.insert("scope".into(), scope.into());
    }
    Response {
        status,
        headers: vec![
            ("www-authenticate".into(), challenge),
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: serde_json::Value::Object(body).to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn no_token_has_no_error_code() {
        let r = respond(&Denial::NoToken, "wasmgate");
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Bearer realm=\"wasmgate\"")
        );
        assert!(body(&r).get("error").is_none());
    }

    #[test]
    fn invalid_token_names_the_reason() {
        let r = respond(&Denial::InvalidToken(TokenError::Expired), "r");
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"the token has expired\""
            )
        );
        assert_eq!(body(&r)["error"], "invalid_token");
        assert_eq!(body(&r)["error_description"], "the token has expired");
    }

    #[test]
    fn bad_request_is_400_and_scope_is_403() {
        let r = respond(&Denial::InvalidRequest(RequestError::MultipleTokens), "r");
        assert_eq!(r.status, 400);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_request\"")
        );
        let r = respond(
            &Denial::InsufficientScope(vec!["demo".into(), "write".into()]),
            "r",
        );
        assert_eq!(r.status, 403);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .ends_with(", scope=\"demo write\"")
        );
        assert_eq!(body(&r)["scope"], "demo write");
    }

    #[test]
    fn no_keys_is_503_with_retry_after() {
        let r = respond(
            &Denial::KeysUnavailable {
                retry_after_seconds: 0,
            },
            "r",
        );
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.header("www-authenticate").is_none());
    }
}
