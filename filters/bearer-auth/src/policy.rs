//! Which requests need what: rules matched in order, first match wins, a default for the rest.
//! (Envoy gives wasm filters no per-route config, so the matching lives in the filter's config.)

use serde::Deserialize;
use wasmgate_filter_common::{Reads, RequestInfo, RequestMatch};

/// What a request must bring: `"anonymous"`, `"token"` or `{"scopes": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Requirement {
    /// No token needed; the Authorization header is left as it is (the token endpoint uses it
    /// for client authentication), only spoofed `x-auth-*` headers are removed.
    Anonymous,
    /// Any valid token.
    Token,
    /// A valid token carrying all of these scopes (RFC 6749 §3.3 scope tokens).
    Scopes(
        #[cfg_attr(
            feature = "schema",
            schemars(length(min = 1), inner(pattern(r"^[\x21\x23-\x5B\x5D-\x7E]+$")))
        )]
        Vec<String>,
    ),
}

#[derive(Debug)]
pub struct Rule {
    pub matcher: RequestMatch,
    pub require: Requirement,
}

#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
    default: Requirement,
    /// What the rules look at beyond the path, worked out once here (`reads`).
    reads: Reads,
}

impl Rules {
    pub fn new(rules: Vec<Rule>, default: Requirement) -> Self {
        let reads = Reads::of(rules.iter().map(|r| &r.matcher));
        Self {
            rules,
            default,
            reads,
        }
    }

    /// Whether `requirement` needs the request's method and host: without a rule on them, the
    /// adapter leaves them empty in `RequestInfo` rather than read them for nothing.
    pub fn reads(&self) -> Reads {
        self.reads
    }

    pub fn requirement(&self, request: &RequestInfo<'_>) -> &Requirement {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(request))
            .map_or(&self.default, |r| &r.require)
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use crate::testkit::config;

    fn req(method: &'static str, path: &'static str) -> RequestInfo<'static> {
        RequestInfo {
            method,
            path,
            host: "localhost:8443",
        }
    }

    #[test]
    fn first_match_wins_and_default_applies_to_the_rest() {
        let c = config(
            r#", "rules": [
                {"match": {"path_prefix": "/api/public", "methods": ["GET"]}, "require": "anonymous"},
                {"match": {"path_prefix": "/api/"}, "require": {"scopes": ["demo"]}},
                {"match": {"path_regex": "^/me$"}, "require": "token"}
            ], "default": "anonymous""#,
        );
        let scopes = Requirement::Scopes(vec!["demo".into()]);
        assert_eq!(
            c.rules.requirement(&req("GET", "/api/public/x")),
            &Requirement::Anonymous
        );
        assert_eq!(c.rules.requirement(&req("POST", "/api/public/x")), &scopes);
        assert_eq!(c.rules.requirement(&req("GET", "/api/notes?x=1")), &scopes);
        assert_eq!(c.rules.requirement(&req("GET", "/me")), &Requirement::Token);
        assert_eq!(
            c.rules.requirement(&req("GET", "/me/2")),
            &Requirement::Anonymous
        );
    }

    #[test]
    fn default_is_a_valid_token() {
        let c = config("");
        assert_eq!(
            c.rules.requirement(&req("GET", "/anything")),
            &Requirement::Token
        );
    }
}
