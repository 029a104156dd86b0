//! Which requests a rule or policy applies to: path prefix or regex, methods, host.

use regex_lite::Regex;
use serde::{Deserialize, Deserializer};

/// The parts of a request that matchers look at, borrowed from the adapter's header map.
/// `method` and `host` are left empty by an adapter whose matchers never look at them
/// (`Reads`): each is a header lookup and a UTF-8 check on every request, for conditions few
/// configurations have.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// `:path` as received, including the query string.
    pub path: &'a str,
    /// `:authority` (or `host`), possibly with a port.
    pub host: &'a str,
}

/// Which of a request's method and host some matcher of a configuration looks at, worked out
/// once when it is loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub method: bool,
    pub host: bool,
}

impl Reads {
    /// What any of `matchers` looks at.
    pub fn of<'m>(matchers: impl IntoIterator<Item = &'m RequestMatch>) -> Self {
        matchers.into_iter().fold(Self::default(), |reads, m| Self {
            method: reads.method || !m.methods.is_empty(),
            host: reads.host || m.host.is_some(),
        })
    }
}

impl RequestInfo<'_> {
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        crate::text::before_ascii(self.path, b'?')
    }
}

/// A request matcher as written in filter configs:
/// `{"path_prefix": "/api/", "methods": ["GET", "POST"], "host": "api.example.com"}`
/// or `{"path_regex": "^/notes/[0-9]+$"}`. Every given condition must hold; an empty matcher
/// matches every request. The field comments are also the descriptions in the JSON Schema.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        title = "Request matcher",
        description = "Which requests this applies to. Every condition given must hold; `{}` (or no matcher) matches every request."
    )
)]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// Matches when the path (without the query string) starts with this prefix, e.g. `/api/`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Matches when this regular expression (Rust `regex` syntax, the RE2 family) finds a match
    /// in the path without the query string. It is not anchored: write `^` and `$`.
    #[serde(default, deserialize_with = "deserialize_regex")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub path_regex: Option<Regex>,
    /// HTTP methods, compared case-sensitively (`GET`, not `get`); empty or absent means any
    /// method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Host, compared case-insensitively and without the port.
    #[serde(default)]
    pub host: Option<String>,
}

impl RequestMatch {
    pub fn matches(&self, request: &RequestInfo<'_>) -> bool {
        let path = request.path_only();
        if let Some(prefix) = &self.path_prefix
            && !path.starts_with(prefix.as_str())
        {
            return false;
        }
        if let Some(regex) = &self.path_regex
            && !regex.is_match(path)
        {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == request.method) {
            return false;
        }
        if let Some(host) = &self.host
            && !host.eq_ignore_ascii_case(strip_port(request.host))
        {
            return false;
        }
        true
    }
}

/// `example.com:8443` → `example.com`, `[::1]:8443` → `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// Compiles a regex at configuration time so a bad one names its field instead of failing later.
pub fn deserialize_regex<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Regex>, D::Error> {
    let source: Option<String> = Option::deserialize(de)?;
    source
        .map(|s| Regex::new(&s).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_config;

    fn req<'a>(method: &'a str, path: &'a str, host: &'a str) -> RequestInfo<'a> {
        RequestInfo { method, path, host }
    }

    #[test]
    fn empty_matcher_matches_everything() {
        assert!(RequestMatch::default().matches(&req("GET", "/x", "h")));
    }

    #[test]
    fn prefix_ignores_the_query() {
        let m: RequestMatch = parse_config(br#"{"path_prefix":"/api/"}"#).unwrap_or_default();
        assert!(m.matches(&req("GET", "/api/notes?x=1", "h")));
        assert!(!m.matches(&req("GET", "/apix?/api/", "h")));
    }

    #[test]
    fn regex_methods_and_host_all_apply() {
        let m: RequestMatch = parse_config(
            br#"{"path_regex":"^/notes/[0-9]+$","methods":["DELETE"],"host":"API.example.com"}"#,
        )
        .unwrap_or_default();
        assert!(m.matches(&req("DELETE", "/notes/12", "api.example.com:8443")));
        assert!(!m.matches(&req("GET", "/notes/12", "api.example.com")));
        assert!(!m.matches(&req("DELETE", "/notes/x", "api.example.com")));
        assert!(!m.matches(&req("DELETE", "/notes/12", "other.example.com")));
    }

    #[test]
    fn reads_names_what_any_matcher_looks_at() {
        let parse = |json: &str| parse_config::<RequestMatch>(json.as_bytes()).unwrap_or_default();
        let prefix = parse(r#"{"path_prefix":"/api/"}"#);
        let methods = parse(r#"{"methods":["GET"]}"#);
        let host = parse(r#"{"host":"a.example"}"#);
        assert_eq!(Reads::of([&prefix]), Reads::default());
        let both = Reads {
            method: true,
            host: true,
        };
        assert_eq!(Reads::of([&prefix, &methods, &host]), both);
        assert!(Reads::of([&methods]).method && !Reads::of([&methods]).host);
        assert!(Reads::of([&host]).host && !Reads::of([&host]).method);
    }

    #[test]
    fn ipv6_host_keeps_its_brackets() {
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn bad_regex_names_the_field() {
        let err = parse_config::<RequestMatch>(br#"{"path_regex":"(unclosed"}"#).err();
        assert_eq!(err.map(|e| e.field).as_deref(), Some("path_regex"));
    }
}
