//! The authorization request (RFC 6749 §4.1.1 with RFC 7636 and RFC 9207), validated in the
//! order §4.1.2.1 requires: until the client and its redirect URI are known good, errors are
//! shown to the user and never sent anywhere; after that they go back to the client.

use serde::{Deserialize, Serialize};

use crate::service::Authz;
use crate::storage::Client;

/// A validated authorization request, carried (signed) through the login and consent pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    /// After this the user must start again from the client.
    pub expires_at: i64,
}

/// An error to send back to the client at its (validated) redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub error: &'static str,
    pub description: String,
    pub state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI can't be trusted: tell the user, redirect nowhere.
    Page(String),
    Redirect(ErrorRedirect),
}

/// Query parameters by name, keeping repeats visible (RFC 6749 §3.1: each at most once).
struct Params(Vec<(String, String)>);

enum Param<'a> {
    Absent,
    One(&'a str),
    Repeated,
}

impl Params {
    fn parse(query: &str) -> Params {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Param<'_> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (None, _) => Param::Absent,
            (Some((_, v)), None) => Param::One(v),
            (Some(_), Some(_)) => Param::Repeated,
        }
    }

    fn repeated(&self) -> Option<&str> {
        self.0.iter().enumerate().find_map(|(i, (k, _))| {
            self.0
                .iter()
                .skip(i + 1)
                .any(|(k2, _)| k2 == k)
                .then_some(k.as_str())
        })
    }
}

/// Validate the query string of `GET /oauth2/authorize`.
pub fn validate(authz: &Authz, query: &str) -> Result<AuthorizationRequest, AuthorizeError> {
    let p = Params::parse(query);
    let page = |m: &str| AuthorizeError::Page(m.to_string());
    let client_id = match p.get("client_id") {
        Param::One(c) => c,
        Param::Absent => return Err(page("The request names no client (client_id is missing).")),
        Param::Repeated => return Err(page("The request names client_id more than once.")),
    };
    let client = authz
        .storage
        .client(client_id)
        .map_err(|e| {
            tracing::error!("storage error: {e}");
            page("The authorization server can't reach its storage; try again later.")
        })?
        .ok_or_else(|| page("The request names a client that is not registered."))?;
    // Exact string match (RFC 9700 §4.1.3): no prefix, no pattern, no normalisation.
    let redirect_uri = match p.get("redirect_uri") {
        Param::One(r) if client.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        Param::One(_) => {
            return Err(page(
                "The redirect_uri does not match any URI registered for this client.",
            ));
        }
        Param::Absent => return Err(page("The request has no redirect_uri.")),
        Param::Repeated => return Err(page("The request names redirect_uri more than once.")),
    };

    // From here on, errors go back to the client.
    let state = match p.get("state") {
        Param::One(s) => Some(s.to_string()),
        _ => None,
    };
    let fail = |error: &'static str, description: String| {
        AuthorizeError::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description,
            state: state.clone(),
        })
    };
    if let Some(name) = p.repeated() {
        return Err(fail(
            "invalid_request",
            format!("parameter `{name}` is repeated"),
        ));
    }
    match p.get("response_type") {
        Param::One("code") => {}
        Param::One(rt) if rt.split(' ').any(|t| t == "token") => {
            return Err(fail(
                "unsupported_response_type",
                "the implicit grant is not offered (RFC 9700 §2.1.2); use response_type=code with PKCE"
                    .into(),
            ));
        }
        Param::One(rt) => {
            return Err(fail(
                "unsupported_response_type",
                format!("response_type `{rt}` is not supported; use `code`"),
            ));
        }
        _ => {
            return Err(fail(
                "invalid_request",
                "missing parameter `response_type`".into(),
            ));
        }
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(fail(
            "unauthorized_client",
            format!(
                "client `{}` may not use the authorization code grant",
                client.id
            ),
        ));
    }
    let scope = match p.get("scope") {
        Param::One(s) => Some(s),
        _ => None,
    };
    let scopes = crate::scope::resolve(scope, &client.scopes, &client.default_scopes)
        .map_err(|e| fail("invalid_scope", e.description))?;
    if scopes.is_empty() {
        return Err(fail(
            "invalid_scope",
            "no scope was asked and the client has no default".into(),
        ));
    }
    let code_challenge = pkce(&client, &p).map_err(|d| fail("invalid_request", d))?;
    if let Param::One(_) = p.get("request") {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported".into(),
        ));
    }
    if let Param::One(_) = p.get("request_uri") {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported".into(),
        ));
    }
    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        scopes,
        state: state.clone(),
        code_challenge,
        expires_at: authz
            .clock
            .now()
            .saturating_add(authz.config.browser.request_lifetime_secs),
    })
}

/// PKCE is required of public clients and honoured for all (RFC 9700 §2.1.1).
fn pkce(client: &Client, p: &Params) -> Result<Option<String>, String> {
    let method = match p.get("code_challenge_method") {
        Param::One(m) => Some(m),
        _ => None,
    };
    match p.get("code_challenge") {
        Param::One(challenge) => {
            super::pkce::check_challenge(challenge, method)?;
            Ok(Some(challenge.to_string()))
        }
        _ if method.is_some() => {
            Err("code_challenge_method was sent without a code_challenge".into())
        }
        _ if client.public => {
            Err("PKCE is required for public clients: send code_challenge with S256".into())
        }
        _ => Ok(None),
    }
}

/// `uri` with `params` added to its query (a registered URI may already have one).
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let q = q.finish();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{q}")
}

impl ErrorRedirect {
    /// The redirect back to the client, with `iss` (RFC 9207) so it can tell who answered.
    pub fn location(&self, issuer: &str) -> String {
        let mut params = vec![
            ("error", self.error),
            ("error_description", self.description.as_str()),
        ];
        if let Some(s) = &self.state {
            params.push(("state", s));
        }
        params.push(("iss", issuer));
        with_query(&self.redirect_uri, &params)
    }
}

impl AuthorizationRequest {
    /// The successful redirect back to the client.
    pub fn success_location(&self, code: &str, issuer: &str) -> String {
        let mut params = vec![("code", code)];
        if let Some(s) = &self.state {
            params.push(("state", s));
        }
        params.push(("iss", issuer));
        with_query(&self.redirect_uri, &params)
    }

    /// The error redirect for this request.
    pub fn error(&self, error: &'static str, description: &str) -> ErrorRedirect {
        ErrorRedirect {
            redirect_uri: self.redirect_uri.clone(),
            error,
            description: description.to_string(),
            state: self.state.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_appended_to_an_existing_one() {
        assert_eq!(
            with_query("https://c/cb", &[("code", "a b"), ("state", "x&y")]),
            "https://c/cb?code=a+b&state=x%26y"
        );
        assert_eq!(
            with_query("https://c/cb?k=1", &[("code", "z")]),
            "https://c/cb?k=1&code=z"
        );
    }

    #[test]
    fn repeats_are_found() {
        assert_eq!(Params::parse("a=1&b=2&a=3").repeated(), Some("a"));
        assert_eq!(Params::parse("a=1&b=2").repeated(), None);
        // An empty value counts as omitted.
        assert_eq!(Params::parse("a=&a=1").repeated(), None);
    }
}
