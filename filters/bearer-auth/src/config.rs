//! The filter's JSON configuration: the schema as users write it (`Raw*`, strict serde structs) and
//! the ready structure (`Config`) built from it once, in `on_configure`.
//!
//! Everything that can be wrong with a configuration is found here, with the JSON path of the
//! field, so a bad config stops the filter from starting instead of failing requests later.

use std::collections::HashSet;

use serde::Deserialize;
use wasmgate_filter_common::{ConfigError, RequestMatch, parse_config};

use crate::jwks::{KeySet, parse_inline_jwks};
use crate::policy::{Requirement, Rule, Rules};

/// `${PUBLIC_URL}`-free defaults; each is documented in docs/filters/bearer-auth.md.
const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
const DEFAULT_CACHE_ENTRIES: usize = 1024;
const DEFAULT_REALM: &str = "wasmgate";
const DEFAULT_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_REFRESH_SECONDS: u64 = 300;
const DEFAULT_UNKNOWN_KID_SECONDS: u64 = 30;
const DEFAULT_RETRY_SECONDS: u64 = 2;
const DEFAULT_MAX_WAIT_MS: u64 = 5_000;

/// Upper bounds that keep a typo (an extra zero) from turning into a memory or latency problem.
const MAX_CLOCK_SKEW_SECONDS: u64 = 600;
const MAX_TOKEN_BYTES_LIMIT: usize = 64 * 1024;
const MAX_CACHE_ENTRIES: usize = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    audiences: Vec<String>,
    jwks: RawJwksSource,
    #[serde(default)]
    hmac_secrets: Vec<RawHmacSecret>,
    #[serde(default)]
    clock_skew_seconds: Option<u64>,
    #[serde(default)]
    required_typ: Option<String>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
    #[serde(default)]
    allow_query_token: bool,
    #[serde(default = "default_true")]
    forward_authorization: bool,
    #[serde(default)]
    claim_headers: Vec<RawClaimHeader>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    cache_max_entries: Option<usize>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default: Option<Requirement>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawJwksSource {
    /// A JWKS document written into the config (`{"keys": [...]}`).
    Inline(serde_json::Value),
    Remote(RawRemote),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    cluster: String,
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    refresh_interval_seconds: Option<u64>,
    #[serde(default)]
    unknown_kid_min_interval_seconds: Option<u64>,
    #[serde(default)]
    retry_interval_seconds: Option<u64>,
    #[serde(default)]
    max_wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHmacSecret {
    #[serde(default)]
    kid: Option<String>,
    alg: String,
    /// The secret, base64url without padding (standard base64 is also accepted).
    secret_base64url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    claim: String,
    header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match", default)]
    matcher: RequestMatch,
    require: Requirement,
}

/// Where the keys come from, ready to use.
#[derive(Debug)]
pub enum JwksSource {
    Inline(KeySet),
    Remote(RemoteJwks),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub refresh_interval_ms: u64,
    pub unknown_kid_min_interval_ms: u64,
    pub retry_interval_ms: u64,
    /// How long a request may stay paused waiting for keys before it is answered.
    pub max_wait_ms: u64,
}

/// An HMAC secret the operator chose to accept (HS* tokens are refused without one).
#[derive(Debug, Clone)]
pub struct HmacSecret {
    pub kid: Option<String>,
    pub alg: String,
    pub secret: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: String,
}

/// The ready configuration.
#[derive(Debug)]
pub struct Config {
    pub issuer: String,
    pub audiences: HashSet<String>,
    pub jwks: JwksSource,
    pub hmac_secrets: Vec<HmacSecret>,
    pub clock_skew_seconds: u64,
    pub required_typ: Option<String>,
    pub max_token_bytes: usize,
    pub allow_query_token: bool,
    pub forward_authorization: bool,
    pub claim_headers: Vec<ClaimHeader>,
    pub realm: String,
    pub cache_max_entries: usize,
    pub rules: Rules,
}

impl Config {
    /// Parses and validates the bytes Envoy hands to `on_configure`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_config(bytes)?;
        build(raw)
    }
}

fn build(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.issuer.trim().is_empty() {
        return Err(ConfigError::new("issuer", "must not be empty"));
    }
    if raw.audiences.is_empty() {
        return Err(ConfigError::new(
            "audiences",
            "at least one audience is required",
        ));
    }
    for (i, aud) in raw.audiences.iter().enumerate() {
        if aud.is_empty() {
            return Err(ConfigError::new(
                format!("audiences[{i}]"),
                "must not be empty",
            ));
        }
    }
    let jwks = match raw.jwks {
        RawJwksSource::Inline(doc) => {
            let bytes = serde_json::to_vec(&doc)
                .map_err(|e| ConfigError::new("jwks.inline", e.to_string()))?;
            let set = parse_inline_jwks(&bytes)
                .map_err(|e| ConfigError::new("jwks.inline", e.to_string()))?;
            JwksSource::Inline(set)
        }
        RawJwksSource::Remote(r) => JwksSource::Remote(build_remote(r)?),
    };
    let hmac_secrets = raw
        .hmac_secrets
        .into_iter()
        .enumerate()
        .map(|(i, s)| build_hmac(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    let clock_skew_seconds = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(ConfigError::new(
            "clock_skew_seconds",
            format!("must be at most {MAX_CLOCK_SKEW_SECONDS}"),
        ));
    }
    let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(64..=MAX_TOKEN_BYTES_LIMIT).contains(&max_token_bytes) {
        return Err(ConfigError::new(
            "max_token_bytes",
            format!("must be between 64 and {MAX_TOKEN_BYTES_LIMIT}"),
        ));
    }
    if let Some(typ) = &raw.required_typ
        && typ.is_empty()
    {
        return Err(ConfigError::new(
            "required_typ",
            "must not be empty when given",
        ));
    }
    let claim_headers = raw
        .claim_headers
        .into_iter()
        .enumerate()
        .map(|(i, c)| build_claim_header(i, c))
        .collect::<Result<Vec<_>, _>>()?;
    let realm = raw.realm.unwrap_or_else(|| DEFAULT_REALM.to_string());
    if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "realm",
            "must not contain quotes, backslashes or control characters",
        ));
    }
    let cache_max_entries = raw.cache_max_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
    if cache_max_entries > MAX_CACHE_ENTRIES {
        return Err(ConfigError::new(
            "cache_max_entries",
            format!("must be at most {MAX_CACHE_ENTRIES} (0 turns the cache off)"),
        ));
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, rule) in raw.rules.into_iter().enumerate() {
        validate_requirement(&rule.require, &format!("rules[{i}].require"))?;
        rules.push(Rule {
            matcher: rule.matcher,
            require: rule.require,
        });
    }
    // Secure by default: a path no rule names needs a valid token.
    let default = raw.default.unwrap_or(Requirement::Token);
    validate_requirement(&default, "default")?;
    Ok(Config {
        issuer: raw.issuer,
        audiences: raw.audiences.into_iter().collect(),
        jwks,
        hmac_secrets,
        clock_skew_seconds,
        required_typ: raw.required_typ,
        max_token_bytes,
        allow_query_token: raw.allow_query_token,
        forward_authorization: raw.forward_authorization,
        claim_headers,
        realm,
        cache_max_entries,
        rules: Rules::new(rules, default),
    })
}

fn build_remote(r: RawRemote) -> Result<RemoteJwks, ConfigError> {
    if r.cluster.is_empty() {
        return Err(ConfigError::new("jwks.remote.cluster", "must not be empty"));
    }
    if !r.path.starts_with('/') {
        return Err(ConfigError::new("jwks.remote.path", "must start with `/`"));
    }
    let secs = |v: Option<u64>, default: u64, field: &str| -> Result<u64, ConfigError> {
        let v = v.unwrap_or(default);
        if v == 0 || v > 7 * 24 * 3600 {
            return Err(ConfigError::new(
                format!("jwks.remote.{field}"),
                "must be between 1 and 604800 seconds",
            ));
        }
        Ok(v.saturating_mul(1000))
    };
    let ms = |v: Option<u64>, default: u64, field: &str| -> Result<u64, ConfigError> {
        let v = v.unwrap_or(default);
        if v == 0 || v > 60_000 {
            return Err(ConfigError::new(
                format!("jwks.remote.{field}"),
                "must be between 1 and 60000 milliseconds",
            ));
        }
        Ok(v)
    };
    Ok(RemoteJwks {
        authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
        timeout_ms: ms(r.timeout_ms, DEFAULT_TIMEOUT_MS, "timeout_ms")?,
        refresh_interval_ms: secs(
            r.refresh_interval_seconds,
            DEFAULT_REFRESH_SECONDS,
            "refresh_interval_seconds",
        )?,
        unknown_kid_min_interval_ms: secs(
            r.unknown_kid_min_interval_seconds,
            DEFAULT_UNKNOWN_KID_SECONDS,
            "unknown_kid_min_interval_seconds",
        )?,
        retry_interval_ms: secs(
            r.retry_interval_seconds,
            DEFAULT_RETRY_SECONDS,
            "retry_interval_seconds",
        )?,
        max_wait_ms: ms(r.max_wait_ms, DEFAULT_MAX_WAIT_MS, "max_wait_ms")?,
        cluster: r.cluster,
        path: r.path,
    })
}

fn build_hmac(i: usize, s: RawHmacSecret) -> Result<HmacSecret, ConfigError> {
    if !matches!(s.alg.as_str(), "HS256" | "HS384" | "HS512") {
        return Err(ConfigError::new(
            format!("hmac_secrets[{i}].alg"),
            "must be one of HS256, HS384, HS512",
        ));
    }
    let secret = crate::b64::decode_lenient(&s.secret_base64url).ok_or_else(|| {
        ConfigError::new(
            format!("hmac_secrets[{i}].secret_base64url"),
            "is not valid base64",
        )
    })?;
    // RFC 7518 §3.2: the key must be at least as long as the hash output.
    let min = match s.alg.as_str() {
        "HS384" => 48,
        "HS512" => 64,
        _ => 32,
    };
    if secret.len() < min {
        return Err(ConfigError::new(
            format!("hmac_secrets[{i}].secret_base64url"),
            format!("{} needs a secret of at least {min} bytes", s.alg),
        ));
    }
    Ok(HmacSecret {
        kid: s.kid,
        alg: s.alg,
        secret,
    })
}

fn build_claim_header(i: usize, c: RawClaimHeader) -> Result<ClaimHeader, ConfigError> {
    if c.claim.is_empty() {
        return Err(ConfigError::new(
            format!("claim_headers[{i}].claim"),
            "must not be empty",
        ));
    }
    let valid_name = !c.header.is_empty()
        && c.header
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(ConfigError::new(
            format!("claim_headers[{i}].header"),
            "must be a lowercase header name (a-z, 0-9, `-`, `_`)",
        ));
    }
    Ok(ClaimHeader {
        claim: c.claim,
        header: c.header,
    })
}

fn validate_requirement(req: &Requirement, field: &str) -> Result<(), ConfigError> {
    if let Requirement::Scopes(scopes) = req {
        if scopes.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.scopes"),
                "must name at least one scope (use \"token\" for any valid token)",
            ));
        }
        for (i, s) in scopes.iter().enumerate() {
            // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E
            let ok = !s.is_empty()
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return Err(ConfigError::new(
                    format!("{field}.scopes[{i}]"),
                    "is not a valid scope token (RFC 6749 §3.3)",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "issuer": "https://localhost:8443",
        "audiences": ["wasmgate-api"],
        "jwks": {"remote": {"cluster": "authz", "path": "/.well-known/jwks.json"}},
        "rules": [
            {"match": {"path_prefix": "/api/"}, "require": {"scopes": ["demo"]}},
            {"match": {"path_prefix": "/oauth2/"}, "require": "anonymous"}
        ]
    }"#;

    fn err(json: &str) -> ConfigError {
        match Config::from_json(json.as_bytes()) {
            Ok(_) => panic!("config should have been refused: {json}"),
            Err(e) => e,
        }
    }

    #[test]
    fn good_config_gets_documented_defaults() {
        let c = Config::from_json(GOOD.as_bytes()).unwrap();
        assert_eq!(c.clock_skew_seconds, 60);
        assert_eq!(c.max_token_bytes, 8192);
        assert!(!c.allow_query_token);
        assert!(c.forward_authorization);
        match c.jwks {
            JwksSource::Remote(r) => {
                assert_eq!(r.authority, "authz");
                assert_eq!(r.refresh_interval_ms, 300_000);
                assert_eq!(r.unknown_kid_min_interval_ms, 30_000);
            }
            JwksSource::Inline(_) => panic!("remote expected"),
        }
    }

    #[test]
    fn empty_issuer_is_refused() {
        let e = err(&GOOD.replace("https://localhost:8443", " "));
        assert_eq!(e.field, "issuer");
    }

    #[test]
    fn missing_key_source_is_refused() {
        let e = err(r#"{"issuer":"x","audiences":["a"]}"#);
        assert!(e.reason.contains("jwks"), "{e}");
    }

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let e = err(&GOOD.replace("\"path\":", "\"paht\":"));
        assert_eq!(e.field, "jwks.remote.paht");
        assert!(e.reason.contains("unknown field"), "{e}");
    }

    #[test]
    fn bad_regex_names_the_rule() {
        let e = err(&GOOD.replace(r#"{"path_prefix": "/api/"}"#, r#"{"path_regex": "(x"}"#));
        assert_eq!(e.field, "rules[0].match.path_regex");
    }

    #[test]
    fn empty_scope_list_is_refused() {
        let e = err(&GOOD.replace(r#"["demo"]"#, "[]"));
        assert_eq!(e.field, "rules[0].require.scopes");
    }

    #[test]
    fn short_hmac_secret_is_refused() {
        let e = err(&GOOD.replace(
            r#""rules""#,
            r#""hmac_secrets":[{"alg":"HS256","secret_base64url":"c2hvcnQ"}], "rules""#,
        ));
        assert_eq!(e.field, "hmac_secrets[0].secret_base64url");
    }

    #[test]
    fn inline_jwks_without_usable_keys_is_refused() {
        let e = err(r#"{"issuer":"x","audiences":["a"],"jwks":{"inline":{"keys":[]}}}"#);
        assert_eq!(e.field, "jwks.inline");
    }

    #[test]
    fn realm_with_quote_is_refused() {
        let e = err(&GOOD.replace(r#""rules""#, r#""realm":"a\"b", "rules""#));
        assert_eq!(e.field, "realm");
    }
}
