//! The filter's JSON configuration, parsed and checked once in `on_configure` into a ready
//! structure. Every refusal names the field (see docs/filters/rate-limit.md for the schema).

use serde::{Deserialize, Deserializer};
use wasmgate_filter_common::{ConfigError, Reads, RequestMatch, parse_config};

use crate::bucket::Rate;
use crate::keys::PolicyHash;
use crate::table::WAYS;

/// Largest `limit` and `burst`: keeps the fixed-point arithmetic far from overflow.
pub const MAX_TOKENS: u64 = 1 << 32;
/// Default table size: 65,536 slots in 8,192 shared-data values.
pub const DEFAULT_SLOTS: u32 = 65_536;
/// Largest table: 2^24 slots (814 MB of values, about 1.1 GB with keys; see the docs).
pub const MAX_SLOTS: u32 = 1 << 24;
pub const DEFAULT_MAX_CAS_RETRIES: u32 = 100;

#[derive(Debug, Clone)]
pub struct Config {
    pub policies: Vec<Policy>,
    pub headers: HeaderMode,
    pub append_action: AppendAction,
    pub failure_mode: FailureMode,
    pub max_cas_retries: u32,
    pub xff_trusted_hops: u32,
    pub table: Table,
    /// What the policies' matchers look at beyond the path: a request's method and host are
    /// read only for them (`RequestInfo`).
    pub matchers_read: Reads,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The bucket hash's state after the policy's identity, worked out once here
    /// (`keys::locate` goes on from it with the request's key).
    pub identity: PolicyHash,
    pub matcher: RequestMatch,
    pub key: Vec<KeyPart>,
    pub on_missing_key: OnMissingKey,
    pub rate: Rate,
    pub dry_run: bool,
}

/// One component of a bucket key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyPart {
    /// A request header's value (e.g. `x-auth-client-id`, set by bearer-auth).
    Header(
        #[cfg_attr(
            feature = "schema",
            schemars(pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))
        )]
        String,
    ),
    /// The client's IP address (connection source, or X-Forwarded-For per `client_ip`).
    ClientIp,
    /// The path without query.
    Path,
    /// The request method.
    Method,
    /// A fixed string: one bucket shared by every matching request.
    Constant(String),
}

/// What to do for a request that has no value for some part of a policy's key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OnMissingKey {
    /// The policy does not apply to this request.
    Skip,
    /// Refuse the request (403).
    Deny,
    /// Use this key instead; if it is missing too, the request is refused.
    Fallback(#[cfg_attr(feature = "schema", schemars(length(min = 1)))] Vec<KeyPart>),
}

/// Which rate-limit headers responses get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HeaderMode {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
    Draft10,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    XRatelimit,
    /// The draft-10 fields and the `X-RateLimit-*` triple.
    Both,
    /// No rate-limit headers.
    None,
}

/// How the rate-limit headers meet headers of the same name from the upstream. The names and
/// meanings are those of Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AppendAction {
    /// Replace any the upstream sent: clients see only the gateway's numbers.
    OverwriteIfExistsOrAdd,
    /// Add after any the upstream sent, as Envoy's `local_ratelimit` does. Cheaper: Envoy adds a
    /// header without first looking for and removing others of its name.
    AppendIfExistsOrAdd,
}

/// What to do when a bucket cannot be updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// When shared data cannot be updated, refuse the request (503).
    Deny,
    /// When shared data cannot be updated, let the request through unlimited.
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub slots: u32,
}

impl Table {
    pub fn groups(&self) -> u32 {
        self.slots / WAYS as u32
    }
}

// ---- the JSON as written -------------------------------------------------------------------

// The `Raw*` types are also the JSON Schema of the configuration (feature `schema`,
// schemas/rate-limit.schema.json): their doc comments are its descriptions, and the
// `schemars(...)` attributes state the checks `load` makes, so editors flag them as you type.

/// A policy or table name: it appears in metric names, shared-data keys and quoted header
/// strings (`check_name`).
#[cfg(feature = "schema")]
const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// Configuration of the wasmgate rate-limit filter: token buckets shared by all Envoy workers.
/// See docs/filters/rate-limit.md.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The URL of this JSON Schema, for editors (schemas/rate-limit.schema.json); the filter ignores
    /// it.
    #[serde(default, rename = "$schema")]
    #[allow(dead_code)]
    schema: Option<String>,
    /// The limits. Every policy that matches a request applies to it; an empty list lets
    /// everything through.
    policies: Vec<RawPolicy>,
    /// Which rate-limit headers responses get.
    #[serde(default = "default_headers")]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "both")))]
    headers: HeaderMode,
    /// How the rate-limit headers meet headers of the same name from the upstream: replace them,
    /// or be added after them.
    #[serde(default = "default_append_action")]
    #[cfg_attr(
        feature = "schema",
        schemars(extend("default" = "overwrite_if_exists_or_add"))
    )]
    append_action: AppendAction,
    /// What to do when a bucket cannot be updated: refuse the request (503) or let it through.
    #[serde(default = "default_failure_mode")]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "deny")))]
    failure_mode: FailureMode,
    /// How many times one bucket update is retried after losing a compare-and-swap race to
    /// another worker before `failure_mode` applies.
    #[serde(default = "default_retries")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1000)))]
    max_cas_retries: u32,
    /// How the `client_ip` key part finds the client's address.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = {"xff_trusted_hops": 0})))]
    client_ip: RawClientIp,
    /// The bucket table in shared data.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(extend("default" = {"name": "default", "slots": DEFAULT_SLOTS}))
    )]
    table: RawTable,
}

/// One limit: requests that match share the buckets named by `key`.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Policy"))]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// Unique; appears in headers, metrics, logs and problem bodies.
    #[cfg_attr(feature = "schema", schemars(pattern(NAME_PATTERN)))]
    name: String,
    /// Which requests the policy applies to; absent or `{}` means every request.
    #[serde(default, rename = "match")]
    matcher: RequestMatch,
    /// What identifies a bucket: the values of all parts together.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    key: Vec<KeyPart>,
    /// What to do when the request has no value (or an empty one) for some part of `key`.
    #[serde(default = "default_on_missing")]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "deny")))]
    on_missing_key: OnMissingKey,
    /// Tokens earned per `interval`. 0 (with `burst` 0 or absent) refuses every matching request.
    #[cfg_attr(feature = "schema", schemars(range(max = MAX_TOKENS)))]
    limit: u64,
    /// A whole number and a unit, `ms`, `s`, `m`, `h` or `d`: `"500ms"`, `"60s"`, `"1h"`.
    #[serde(deserialize_with = "deserialize_duration")]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "String", pattern("^[0-9]*[1-9][0-9]*(ms|s|m|h|d)$"))
    )]
    interval: u64,
    /// Bucket capacity: how many requests may arrive at once after a quiet period. Defaults to
    /// `limit`; must be at least 1 when `limit` is above 0, and 0 when `limit` is 0.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(max = MAX_TOKENS)))]
    burst: Option<u64>,
    /// Count and send headers, but never refuse a request.
    #[serde(default)]
    dry_run: bool,
}

/// How the `client_ip` key part finds the client's address.
#[derive(Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "ClientIp"))]
#[serde(deny_unknown_fields)]
struct RawClientIp {
    /// 0: the connection's source address (X-Forwarded-For is ignored). N: the N-th address from
    /// the right of X-Forwarded-For, counting every trusted proxy that appends to it.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(max = 64)))]
    xff_trusted_hops: u32,
}

/// The fixed-size bucket table in shared data: memory stays bounded whatever the number of
/// clients.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "Table"))]
#[serde(deny_unknown_fields)]
struct RawTable {
    /// Names the table in shared data: plugins that share a `vm_id` and a table name share
    /// buckets.
    #[serde(default = "default_table_name")]
    #[cfg_attr(feature = "schema", schemars(pattern(NAME_PATTERN), extend("default" = "default")))]
    name: String,
    /// Number of bucket slots, a multiple of 8.
    #[serde(default = "default_slots")]
    #[cfg_attr(
        feature = "schema",
        schemars(range(min = WAYS, max = MAX_SLOTS), extend("multipleOf" = WAYS))
    )]
    slots: u32,
}

impl Default for RawTable {
    fn default() -> Self {
        Self {
            name: default_table_name(),
            slots: DEFAULT_SLOTS,
        }
    }
}

/// The public JSON Schema of this configuration, for `cargo xtask schemas`.
#[cfg(feature = "schema")]
pub fn json_schema() -> schemars::Schema {
    wasmgate_filter_common::schema::root_schema_for::<RawConfig>()
}

fn default_headers() -> HeaderMode {
    HeaderMode::Both
}
fn default_append_action() -> AppendAction {
    AppendAction::OverwriteIfExistsOrAdd
}
fn default_failure_mode() -> FailureMode {
    FailureMode::Deny
}
fn default_retries() -> u32 {
    DEFAULT_MAX_CAS_RETRIES
}
fn default_on_missing() -> OnMissingKey {
    OnMissingKey::Deny
}
fn default_table_name() -> String {
    "default".to_owned()
}
fn default_slots() -> u32 {
    DEFAULT_SLOTS
}

/// `"500ms"`, `"60s"`, `"15m"`, `"1h"`, `"1d"` → nanoseconds.
fn deserialize_duration<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    let text = String::deserialize(de)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

pub fn parse_duration(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: write a whole number and a unit, ms, s, m, h or d (e.g. \"60s\")"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: the number is missing or too large"))?;
    let ns = n
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too long (the limit is about 584 years)"))?;
    if ns == 0 {
        return Err("the interval must be longer than zero".to_owned());
    }
    Ok(ns)
}

/// Parses and checks the configuration bytes Envoy passes to `on_configure`.
pub fn load(bytes: &[u8]) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_config(bytes)?;
    let mut policies: Vec<Policy> = Vec::with_capacity(raw.policies.len());
    for (i, p) in raw.policies.into_iter().enumerate() {
        let at = |field: &str| format!("policies[{i}].{field}");
        check_name(&p.name).map_err(|r| ConfigError::new(at("name"), r))?;
        if policies.iter().any(|q| q.name == p.name) {
            return Err(ConfigError::new(
                at("name"),
                format!("another policy is already named `{}`", p.name),
            ));
        }
        check_key(&p.key).map_err(|r| ConfigError::new(at("key"), r))?;
        if let OnMissingKey::Fallback(parts) = &p.on_missing_key {
            check_key(parts).map_err(|r| ConfigError::new(at("on_missing_key.fallback"), r))?;
        }
        if p.limit > MAX_TOKENS {
            return Err(ConfigError::new(
                at("limit"),
                format!("must be at most {MAX_TOKENS}"),
            ));
        }
        let burst = p.burst.unwrap_or(p.limit);
        if burst > MAX_TOKENS {
            return Err(ConfigError::new(
                at("burst"),
                format!("must be at most {MAX_TOKENS}"),
            ));
        }
        if p.limit == 0 && burst > 0 {
            return Err(ConfigError::new(
                at("burst"),
                "with limit 0 the bucket never refills; a policy that blocks every request needs burst 0",
            ));
        }
        if p.limit > 0 && burst == 0 {
            return Err(ConfigError::new(
                at("burst"),
                "must be at least 1 (a bucket of 0 tokens refuses every request; use limit 0 for that)",
            ));
        }
        let rate = Rate {
            limit: p.limit,
            interval_ns: p.interval,
            burst,
        };
        policies.push(Policy {
            identity: PolicyHash::new(&p.name, &rate),
            name: p.name,
            matcher: p.matcher,
            key: p.key,
            on_missing_key: p.on_missing_key,
            rate,
            dry_run: p.dry_run,
        });
    }
    if !(1..=1_000).contains(&raw.max_cas_retries) {
        return Err(ConfigError::new(
            "max_cas_retries",
            "must be between 1 and 1000",
        ));
    }
    if raw.client_ip.xff_trusted_hops > 64 {
        return Err(ConfigError::new(
            "client_ip.xff_trusted_hops",
            "must be at most 64",
        ));
    }
    check_name(&raw.table.name).map_err(|r| ConfigError::new("table.name", r))?;
    let slots = raw.table.slots;
    if !(WAYS as u32..=MAX_SLOTS).contains(&slots) || !slots.is_multiple_of(WAYS as u32) {
        return Err(ConfigError::new(
            "table.slots",
            format!("must be a multiple of {WAYS} between {WAYS} and {MAX_SLOTS}"),
        ));
    }
    let matchers_read = Reads::of(policies.iter().map(|p| &p.matcher));
    Ok(Config {
        policies,
        headers: raw.headers,
        append_action: raw.append_action,
        failure_mode: raw.failure_mode,
        max_cas_retries: raw.max_cas_retries,
        xff_trusted_hops: raw.client_ip.xff_trusted_hops,
        table: Table {
            name: raw.table.name,
            slots,
        },
        matchers_read,
    })
}

/// Names appear in metric names, shared-data keys and quoted header strings: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(format!(
            "`{name}` must be 1 to 64 characters from A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(())
}

fn check_key(parts: &[KeyPart]) -> Result<(), String> {
    if parts.is_empty() {
        return Err("needs at least one part".to_owned());
    }
    for part in parts {
        if let KeyPart::Header(name) = part {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(format!("`{name}` is not a header name"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> (String, String) {
        let e = load(json.as_bytes()).expect_err("config should be refused");
        (e.field, e.reason)
    }

    const SEED: &str = r#"{"policies":[{"name":"per-client","match":{"path_prefix":"/api/"},
        "key":[{"header":"x-auth-client-id"}],"on_missing_key":{"fallback":["client_ip"]},
        "limit":100,"interval":"60s"}]}"#;

    #[test]
    fn the_seed_policy_loads_with_defaults() {
        let c = load(SEED.as_bytes()).unwrap();
        let p = &c.policies[0];
        assert_eq!(
            p.rate,
            Rate {
                limit: 100,
                interval_ns: 60_000_000_000,
                burst: 100
            }
        );
        assert_eq!(p.key, vec![KeyPart::Header("x-auth-client-id".into())]);
        assert_eq!(
            p.on_missing_key,
            OnMissingKey::Fallback(vec![KeyPart::ClientIp])
        );
        assert!(!p.dry_run);
        assert_eq!(c.headers, HeaderMode::Both);
        assert_eq!(c.append_action, AppendAction::OverwriteIfExistsOrAdd);
        assert_eq!(c.failure_mode, FailureMode::Deny);
        assert_eq!(c.max_cas_retries, DEFAULT_MAX_CAS_RETRIES);
        assert_eq!(c.table.slots, DEFAULT_SLOTS);
        assert_eq!(c.table.groups(), DEFAULT_SLOTS / 8);
    }

    #[test]
    fn the_shipped_stack_config_loads() {
        let text = include_str!("../../../envoy/filters/rate-limit.json");
        let c = load(text.as_bytes()).unwrap();
        assert!(!c.policies.is_empty());
    }

    #[test]
    fn every_key_part_and_option_parses() {
        let c = load(
            br#"{"headers":"draft10","append_action":"append_if_exists_or_add",
                "failure_mode":"allow","max_cas_retries":5,
                "client_ip":{"xff_trusted_hops":2},"table":{"name":"t1","slots":16},
                "policies":[{"name":"p","key":["client_ip","path","method",{"constant":"all"},
                {"header":"x-api-key"}],"on_missing_key":"skip","limit":0,"interval":"1d",
                "dry_run":true}]}"#,
        )
        .unwrap();
        assert_eq!(c.headers, HeaderMode::Draft10);
        assert_eq!(c.append_action, AppendAction::AppendIfExistsOrAdd);
        assert_eq!(c.failure_mode, FailureMode::Allow);
        assert_eq!(c.xff_trusted_hops, 2);
        assert_eq!(
            c.table,
            Table {
                name: "t1".into(),
                slots: 16
            }
        );
        assert_eq!(c.policies[0].key.len(), 5);
        assert_eq!(c.policies[0].on_missing_key, OnMissingKey::Skip);
        assert_eq!(c.policies[0].rate.burst, 0);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("60s"), Ok(60_000_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000_000_000));
        assert!(parse_duration("60").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("99999999999d").is_err());
    }

    #[test]
    fn refusals_name_the_field() {
        // Two policies; `extra` replaces or adds fields of the second.
        let p = |extra: &str| {
            let mut second: serde_json::Value =
                serde_json::from_str(r#"{"name":"b","key":["path"],"limit":10,"interval":"1s"}"#)
                    .unwrap();
            let extra: serde_json::Value =
                serde_json::from_str(&format!("{{{}}}", &extra[1..])).unwrap();
            for (k, v) in extra.as_object().unwrap() {
                second[k] = v.clone();
            }
            format!(
                r#"{{"policies":[{{"name":"a","key":["path"],"limit":10,"interval":"1s"}},{second}]}}"#
            )
        };
        assert_eq!(err(&p(r#","burst":"x""#)).0, "policies[1].burst");
        assert_eq!(err(&p(r#","burst":0"#)).0, "policies[1].burst");
        assert_eq!(err(&p(r#","limit":99999999999"#)).0, "policies[1].limit");
        assert_eq!(err(&p(r#","interval":"10 s""#)).0, "policies[1].interval");
        assert_eq!(err(&p(r#","key":[]"#)).0, "policies[1].key");
        assert_eq!(err(&p(r#","key":["ip"]"#)).0, "policies[1].key[0]");
        assert_eq!(err(&p(r#","key":[{"header":"a b"}]"#)).0, "policies[1].key");
        assert_eq!(
            err(&p(r#","on_missing_key":{"fallback":[]}"#)).0,
            "policies[1].on_missing_key.fallback"
        );
        assert_eq!(
            err(&p(r#","on_missing_key":"maybe""#)).0,
            "policies[1].on_missing_key"
        );
        assert_eq!(
            err(&p(r#","match":{"path_regex":"("}"#)).0,
            "policies[1].match.path_regex"
        );
        assert!(err(&p(r#","dryrun":true"#)).1.contains("unknown field"));
        let (field, reason) = err(&p(r#","name":"a""#));
        assert_eq!(field, "policies[1].name");
        assert!(reason.contains("already named"));
        assert_eq!(err(&p(r#","name":"a\"b""#)).0, "policies[1].name");
        assert_eq!(err(&p(r#","limit":0,"burst":3"#)).0, "policies[1].burst");
    }

    #[test]
    fn table_and_global_refusals_name_the_field() {
        let with = |extra: &str| format!(r#"{{"policies":[],{extra}}}"#);
        assert_eq!(err(&with(r#""table":{"slots":12}"#)).0, "table.slots");
        assert_eq!(err(&with(r#""table":{"slots":0}"#)).0, "table.slots");
        assert_eq!(err(&with(r#""table":{"slots":33554432}"#)).0, "table.slots");
        assert_eq!(err(&with(r#""table":{"name":"a/b"}"#)).0, "table.name");
        assert_eq!(err(&with(r#""max_cas_retries":0"#)).0, "max_cas_retries");
        assert_eq!(
            err(&with(r#""client_ip":{"xff_trusted_hops":65}"#)).0,
            "client_ip.xff_trusted_hops"
        );
        assert_eq!(err(&with(r#""headers":"all""#)).0, "headers");
        // Envoy's other actions keep the upstream's header or add nothing: not offered.
        assert_eq!(
            err(&with(r#""append_action":"add_if_absent""#)).0,
            "append_action"
        );
        assert_eq!(err(&with(r#""failure_mode":"open""#)).0, "failure_mode");
        assert_eq!(err("{}").0, "", "policies is required");
    }
}
