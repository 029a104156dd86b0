//! The filter's JSON configuration: the schema as users write it (`Raw*`, strict serde structs) and
//! the ready structure (`Config`) built from it once, in `on_configure`.
//!
//! Everything that can be wrong with a configuration is found here, with the JSON path of the
//! field, so a bad config stops the filter from starting instead of failing requests later.

use std::collections::HashSet;

use serde::Deserialize;
use wasmgate_filter_common::{ConfigError, RequestMatch, parse_config};

use crate::engine::{CLIENT_ID_HEADER, SCOPE_HEADER, SUBJECT_HEADER};
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
/// Bounds of the remote JWKS timings (`build_remote`).
const MAX_SECONDS: u64 = 7 * 24 * 3600;
const MAX_MS: u64 = 60_000;

// The `Raw*` types are also the JSON Schema of the configuration (feature `schema`,
// schemas/bearer-auth.schema.json): their doc comments are its descriptions, and the
// `schemars(...)` attributes state the checks `build` makes, so editors flag them as you type.

/// Configuration of the wasmgate bearer-auth filter: checks OAuth 2.0 JWT access tokens
/// (RFC 9068) and answers per RFC 6750. See docs/filters/bearer-auth.md.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The URL of this JSON Schema, for editors (schemas/bearer-auth.schema.json); the filter ignores
    /// it.
    #[serde(default, rename = "$schema")]
    #[allow(dead_code)]
    schema: Option<String>,
    /// The token's `iss` claim must equal this exactly, e.g. `https://auth.example.com`.
    #[cfg_attr(feature = "schema", schemars(pattern(r"\S")))]
    issuer: String,
    /// The token's `aud` claim (a string or an array) must contain at least one of these.
    #[cfg_attr(feature = "schema", schemars(length(min = 1), inner(length(min = 1))))]
    audiences: Vec<String>,
    /// Where the verification keys come from: exactly one of `remote` and `inline`.
    jwks: RawJwksSource,
    /// Shared secrets for HS256/HS384/HS512 tokens. Without a matching entry every HS* token is
    /// refused.
    #[serde(default)]
    hmac_secrets: Vec<RawHmacSecret>,
    /// Tolerance in seconds for `exp`, `nbf` and `iat`.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(max = MAX_CLOCK_SKEW_SECONDS), extend("default" = DEFAULT_CLOCK_SKEW_SECONDS))
    )]
    clock_skew_seconds: Option<u64>,
    /// When set, the JOSE header `typ` must match, case-insensitively, with or without
    /// `application/` (RFC 9068: `at+jwt`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    required_typ: Option<String>,
    /// Longer tokens are refused before any decoding.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(min = 64, max = MAX_TOKEN_BYTES_LIMIT), extend("default" = DEFAULT_MAX_TOKEN_BYTES))
    )]
    max_token_bytes: Option<usize>,
    /// Also accept the token in the `access_token` query parameter (RFC 6750 §2.3).
    #[serde(default)]
    allow_query_token: bool,
    /// `false` removes the `Authorization` header (or the `access_token` query parameter)
    /// before the request goes upstream.
    #[serde(default = "default_true")]
    forward_authorization: bool,
    /// Extra claims copied into request headers for the upstream.
    #[serde(default)]
    claim_headers: Vec<RawClaimHeader>,
    /// The `realm` of the `WWW-Authenticate` challenge.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(
            pattern(r#"^[^"\\\u0000-\u001F\u007F-\u009F]*$"#),
            extend("default" = DEFAULT_REALM)
        )
    )]
    realm: Option<String>,
    /// Size of each VM's verified-token cache; 0 turns the cache off.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(max = MAX_CACHE_ENTRIES), extend("default" = DEFAULT_CACHE_ENTRIES))
    )]
    cache_max_entries: Option<usize>,
    /// Which requests need what, tried in order: the first rule whose `match` fits applies.
    #[serde(default)]
    rules: Vec<RawRule>,
    /// The requirement for requests that no rule matches.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "token")))]
    default: Option<Requirement>,
}

fn default_true() -> bool {
    true
}

/// Where the verification keys come from: exactly one of `remote` and `inline`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "JwksSource"))]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawJwksSource {
    /// A JWKS document (`{"keys": [...]}`) written into the configuration. Every key in it must
    /// be usable, or the configuration is refused.
    Inline(
        #[cfg_attr(feature = "schema", schemars(with = "schema::InlineJwks"))] serde_json::Value,
    ),
    /// Fetch the JWKS over HTTP through an Envoy cluster, keep it in shared data for every
    /// worker, refresh it on a schedule and when a token names an unknown `kid`.
    Remote(RawRemote),
}

/// Fetching the JWKS through an Envoy cluster.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "RemoteJwks"))]
#[serde(deny_unknown_fields)]
struct RawRemote {
    /// The Envoy cluster of the JWKS endpoint.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    cluster: String,
    /// Path of the JWKS document, e.g. `/.well-known/jwks.json`.
    #[cfg_attr(feature = "schema", schemars(pattern("^/")))]
    path: String,
    /// `:authority` of the fetch; defaults to the cluster name.
    #[serde(default)]
    authority: Option<String>,
    /// Timeout of one fetch, in milliseconds.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(min = 1, max = MAX_MS), extend("default" = DEFAULT_TIMEOUT_MS))
    )]
    timeout_ms: Option<u64>,
    /// Seconds between scheduled refreshes.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(min = 1, max = MAX_SECONDS), extend("default" = DEFAULT_REFRESH_SECONDS))
    )]
    refresh_interval_seconds: Option<u64>,
    /// At most one refetch triggered by unknown `kid`s per this many seconds, across all
    /// workers.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(min = 1, max = MAX_SECONDS), extend("default" = DEFAULT_UNKNOWN_KID_SECONDS))
    )]
    unknown_kid_min_interval_seconds: Option<u64>,
    /// After a failed fetch, no new attempt for this many seconds.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(min = 1, max = MAX_SECONDS), extend("default" = DEFAULT_RETRY_SECONDS))
    )]
    retry_interval_seconds: Option<u64>,
    /// How long a request may stay paused waiting for the first keys, in milliseconds, before
    /// it is answered 503.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(range(min = 1, max = MAX_MS), extend("default" = DEFAULT_MAX_WAIT_MS))
    )]
    max_wait_ms: Option<u64>,
}

/// A shared secret for HMAC-signed (HS*) tokens.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "HmacSecret"))]
#[serde(deny_unknown_fields)]
struct RawHmacSecret {
    /// Only tokens with this `kid` use the secret; without it, tokens without a `kid` do.
    #[serde(default)]
    kid: Option<String>,
    /// The HMAC algorithm the secret is for.
    #[cfg_attr(feature = "schema", schemars(extend("enum" = ["HS256", "HS384", "HS512"])))]
    alg: String,
    /// The secret, base64url without padding (standard base64 is also accepted); at least as
    /// long as the hash: 32, 48 or 64 bytes.
    #[cfg_attr(feature = "schema", schemars(pattern("^[A-Za-z0-9+/_-]+={0,2}$")))]
    secret_base64url: String,
}

/// A claim copied into a request header (arrays joined with spaces, numbers and booleans as
/// text; objects are skipped).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "ClaimHeader"))]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    /// The claim's name, e.g. `groups`.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    claim: String,
    /// The header to set, in lowercase, e.g. `x-auth-groups`: each named once, and none of
    /// `x-auth-subject`, `x-auth-client-id` and `x-auth-scope`, which the filter sets itself. A
    /// client's own copy is always removed, on every route, so headers of the request itself,
    /// Envoy's and other wasmgate filters' are refused (`authorization`, `host`, framing and
    /// hop-by-hop headers, `cookie`, the forwarding headers, `x-envoy-*`, `x-wasmgate-*`).
    #[cfg_attr(feature = "schema", schemars(pattern("^[a-z0-9_-]+$")))]
    header: String,
}

/// Which requests need what: the first rule whose `match` fits the request applies.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Rule"))]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Which requests the rule applies to; absent or `{}` means every request.
    #[serde(rename = "match", default)]
    matcher: RequestMatch,
    /// What the matching requests must bring.
    require: Requirement,
}

/// Schema-only types: the shape of values that serde takes as they are and `build` checks.
#[cfg(feature = "schema")]
mod schema {
    use serde_json::{Map, Value};

    /// A JWKS document (RFC 7517).
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    pub struct InlineJwks {
        /// The keys: OKP (Ed25519), EC (P-256, P-384) or RSA public keys with `use` `sig` or
        /// no `use`.
        #[schemars(length(min = 1))]
        keys: Vec<Jwk>,
    }

    /// A JSON Web Key; members other than these are allowed and ignored.
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    pub struct Jwk {
        /// Key type: `OKP`, `EC` or `RSA`.
        kty: String,
        #[serde(flatten)]
        other: Map<String, Value>,
    }
}

/// The public JSON Schema of this configuration, for `cargo xtask schemas`.
#[cfg(feature = "schema")]
pub fn json_schema() -> schemars::Schema {
    wasmgate_filter_common::schema::root_schema_for::<RawConfig>()
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
    check_claim_headers_distinct(&claim_headers)?;
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
        if v == 0 || v > MAX_SECONDS {
            return Err(ConfigError::new(
                format!("jwks.remote.{field}"),
                "must be between 1 and 604800 seconds",
            ));
        }
        Ok(v.saturating_mul(1000))
    };
    let ms = |v: Option<u64>, default: u64, field: &str| -> Result<u64, ConfigError> {
        let v = v.unwrap_or(default);
        if v == 0 || v > MAX_MS {
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
    if is_reserved(&c.header) {
        return Err(ConfigError::new(
            format!("claim_headers[{i}].header"),
            format!(
                "`{}` belongs to the request, to Envoy or to another wasmgate filter, and a \
                 claim header's incoming copy is removed from every request",
                c.header
            ),
        ));
    }
    Ok(ClaimHeader {
        claim: c.claim,
        header: c.header,
    })
}

/// Headers a claim may not be mapped to. The filter removes a client's copy of each claim header
/// from every request it lets through, anonymous ones included: mapped to one of these, it would
/// strip the credentials the token endpoint reads, the request's framing, its cookies, the
/// forwarding headers rate-limit keys on, or what Envoy and route-rewrite set.
fn is_reserved(header: &str) -> bool {
    const NAMES: [&str; 19] = [
        "authorization",
        "proxy-authorization",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
        "cookie",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
    ];
    const PREFIXES: [&str; 2] = ["x-envoy-", "x-wasmgate-"];
    NAMES.contains(&header) || PREFIXES.iter().any(|prefix| header.starts_with(prefix))
}

/// Each identity header is written once per request: a claim header may not be one the filter
/// sets itself, nor one another mapping sets (which value would win is not a thing to guess).
fn check_claim_headers_distinct(claim_headers: &[ClaimHeader]) -> Result<(), ConfigError> {
    const BUILT_IN: [&str; 3] = [SUBJECT_HEADER, CLIENT_ID_HEADER, SCOPE_HEADER];
    for (i, c) in claim_headers.iter().enumerate() {
        let field = || format!("claim_headers[{i}].header");
        if BUILT_IN.contains(&c.header.as_str()) {
            return Err(ConfigError::new(
                field(),
                format!("`{}` is set by the filter itself", c.header),
            ));
        }
        if let Some(j) = claim_headers
            .iter()
            .take(i)
            .position(|e| e.header == c.header)
        {
            return Err(ConfigError::new(
                field(),
                format!("`{}` is already set by claim_headers[{j}]", c.header),
            ));
        }
    }
    Ok(())
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
    fn a_claim_header_is_set_once_and_takes_over_no_other_header() {
        let with = |mappings: &str| {
            GOOD.replace(
                r#""rules""#,
                &format!(r#""claim_headers":[{mappings}], "rules""#),
            )
        };
        let e = err(&with(r#"{"claim":"sub","header":"x-auth-subject"}"#));
        assert_eq!(e.field, "claim_headers[0].header");
        assert!(e.reason.contains("set by the filter itself"), "{e}");
        let e = err(&with(
            r#"{"claim":"groups","header":"x-groups"},{"claim":"roles","header":"x-groups"}"#,
        ));
        assert_eq!(e.field, "claim_headers[1].header");
        assert!(e.reason.contains("claim_headers[0]"), "{e}");
        for reserved in [
            "authorization",
            "x-forwarded-for",
            "x-wasmgate-upstream",
            "x-envoy-x",
        ] {
            let e = err(&with(&format!(
                r#"{{"claim":"sub","header":"{reserved}"}}"#
            )));
            assert_eq!(e.field, "claim_headers[0].header");
            assert!(e.reason.contains("removed from every request"), "{e}");
        }
        let c = Config::from_json(with(r#"{"claim":"groups","header":"x-groups"}"#).as_bytes());
        assert_eq!(c.map(|c| c.claim_headers.len()).ok(), Some(1));
    }

    #[test]
    fn realm_with_quote_is_refused() {
        let e = err(&GOOD.replace(r#""rules""#, r#""realm":"a\"b", "rules""#));
        assert_eq!(e.field, "realm");
    }
}
