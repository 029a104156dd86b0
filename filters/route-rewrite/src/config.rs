//! The JSON configuration as written, and its compilation into a ready `RuleSet`.
//! serde checks the shape (naming the field); `compile` checks the meaning of every rule and
//! names the rule's index, its text and the reason.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use wasmgate_filter_common::{ConfigError, parse_config};

use crate::condition::Condition;
use crate::engine::{Forwarding, RuleSet};
use crate::flags::CondFlags;
use crate::rule::{Parts, Rule, Upstreams};
use crate::syntax;

/// Default bound on rule applications in one request: far above what a sane rule set needs
/// (only `N` can apply a rule twice), low enough to stop a loop quickly.
const DEFAULT_MAX_RULE_APPLICATIONS: u32 = 100;
/// Default bound on the length of a rewritten `path?query`, so that a growing rule cannot build
/// a header Envoy would refuse (its default limit for all headers is 60 KiB).
const DEFAULT_MAX_PATH_LENGTH: usize = 8192;

// The `Raw*` types are also the JSON Schema of the configuration (feature `schema`,
// schemas/route-rewrite.schema.json): their doc comments are its descriptions, and the
// `schemars(...)` attributes state the checks `compile` can make without compiling a rule.

/// Configuration of the wasmgate route-rewrite filter: Apache mod_rewrite-style rules (rewrite,
/// `[P]` proxy to another upstream, redirect, refuse). See docs/filters/route-rewrite.md.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The URL of this JSON Schema, for editors (schemas/route-rewrite.schema.json); the filter ignores
    /// it.
    #[serde(default, rename = "$schema")]
    #[allow(dead_code)]
    schema: Option<String>,
    /// The rules, applied in order: one-line rules, `RewriteCond` lines (for the next rule),
    /// `#` comments, and structured rules.
    #[serde(default)]
    rules: Vec<StringOr<RawRule>>,
    /// Maps the authority of `[P]` target URLs (`host[:port]` as written in the rule, case
    /// ignored) to the Envoy cluster that serves it. Every `[P]` target must be mapped.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(extend(
            "propertyNames" = {"pattern": r"^[A-Za-z0-9._:\[\]-]+$"},
            "additionalProperties" = {"type": "string", "pattern": r"^[\x21-\x7E]+$"}
        ))
    )]
    upstreams: BTreeMap<String, String>,
    /// Loop protection: the most rule applications one request may take (only `N` can apply a
    /// rule twice). Past it the request is answered 500.
    #[serde(default = "default_max_rule_applications")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    max_rule_applications: u32,
    /// The longest `path?query` (bytes) a rule may produce. Longer is answered 500.
    #[serde(default = "default_max_path_length")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    max_path_length: usize,
    /// A `[P]` rule keeps the `:authority` (Host) the client sent instead of setting the target
    /// URL's, as Apache's `ProxyPreserveHost On`: for an upstream that serves several names or
    /// builds links from the Host it is asked for. The target's authority still picks the cluster.
    #[serde(default)]
    preserve_host: bool,
    /// Whether a request a rule rewrote or proxied carries the path the client sent in
    /// `x-wasmgate-original-path`. A client's own `x-wasmgate-original-path` is removed either way.
    #[serde(default = "default_send_original_path")]
    send_original_path: bool,
}

fn default_max_rule_applications() -> u32 {
    DEFAULT_MAX_RULE_APPLICATIONS
}

fn default_max_path_length() -> usize {
    DEFAULT_MAX_PATH_LENGTH
}

fn default_send_original_path() -> bool {
    Forwarding::default().send_original_path
}

/// The structured form of a rule: either `rule` (the one-line form) or `pattern`,
/// `substitution` and `flags`; `conditions` and `name` with both.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        rename = "Rule",
        extend("oneOf" = [
            {
                "title": "one-line rule in `rule`",
                "required": ["rule"],
                "properties": {
                    "rule": {"type": "string"},
                    "pattern": {"type": "null"},
                    "substitution": {"type": "null"},
                    "flags": {"type": "null"}
                }
            },
            {
                "title": "`pattern`, `substitution` and optional `flags`",
                "required": ["pattern", "substitution"],
                "properties": {
                    "rule": {"type": "null"},
                    "pattern": {"type": "string"},
                    "substitution": {"type": "string"}
                }
            }
        ])
    )
)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Names the rule in metrics and logs (default: its index); unique among the rules.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(pattern("^[A-Za-z0-9_-]{1,64}$")))]
    name: Option<String>,
    /// The one-line form, `PATTERN SUBSTITUTION [FLAGS]`, e.g.
    /// `^/api/(.*)$ http://localhost:3002/api/$1 [P,QSA]`. Not with `pattern`, `substitution`
    /// or `flags`.
    #[serde(default)]
    rule: Option<String>,
    /// A regular expression (Rust `regex` syntax) matched against the path without the query
    /// (with flag `MQ`, `path?query`); not anchored. A leading `!` negates it.
    #[serde(default)]
    pattern: Option<String>,
    /// What the whole path becomes: `-` (unchanged), `/path?query`, or an absolute URL (with
    /// `P` or `R`). `$N`, `${name}`, `%N` and `%{VAR}` are expanded.
    #[serde(default)]
    substitution: Option<String>,
    /// Flag words, case-insensitive: `P`, `R` (`R=301`, 302, 303, 307, 308), `F`, `G`, `L`,
    /// `N`, `C`, `S=n`, `NC`, `QSA`, `QSD`, `MQ`, `NE`, or Apache's long names.
    #[serde(default)]
    flags: Option<Vec<String>>,
    /// Conditions that must hold for the rule to apply, after any `RewriteCond` lines that
    /// precede it: one-line `TESTSTRING CONDPATTERN [FLAGS]` strings or structured conditions.
    #[serde(default)]
    conditions: Vec<StringOr<RawCondition>>,
}

/// The structured form of a condition.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        rename = "Condition",
        extend("oneOf" = [
            {
                "title": "a regex in `matches`",
                "required": ["matches"],
                "properties": {"matches": {"type": "string"}, "equals": {"type": "null"}}
            },
            {
                "title": "an exact text in `equals`",
                "required": ["equals"],
                "properties": {"equals": {"type": "string"}, "matches": {"type": "null"}}
            }
        ])
    )
)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    /// `method`, `host`, `path`, `query`, `scheme`, `header:<name>`, or a test string with
    /// variables such as `%{HTTP:x-tenant}`.
    #[cfg_attr(
        feature = "schema",
        schemars(extend("anyOf" = [
            {"enum": ["method", "host", "path", "query", "scheme"]},
            {"pattern": "^header:[A-Za-z0-9!#$&'*+.^_`|~-]+$"},
            {"pattern": r"%\{|\$"}
        ]))
    )]
    on: String,
    /// A regular expression the value must match (not anchored). Give exactly one of `matches`
    /// and `equals`.
    #[serde(default)]
    matches: Option<String>,
    /// A text the value must equal.
    #[serde(default)]
    equals: Option<String>,
    /// The condition holds when the test fails.
    #[serde(default)]
    negate: bool,
    /// Compare ignoring case.
    #[serde(default)]
    nocase: bool,
    /// Combine with the next condition by "or" instead of "and".
    #[serde(default)]
    or: bool,
}

/// The public JSON Schema of this configuration, for `cargo xtask schemas`.
#[cfg(feature = "schema")]
pub fn json_schema() -> schemars::Schema {
    wasmgate_filter_common::schema::root_schema_for::<RawConfig>()
}

/// A JSON value that is either a one-line string or a structured object.
#[derive(Debug)]
enum StringOr<T> {
    Text(String),
    Object(T),
}

/// The one-line (string) form of `T`, for the schema of `StringOr<T>`.
#[cfg(feature = "schema")]
trait OneLineForm {
    const DESCRIPTION: &'static str;
}

#[cfg(feature = "schema")]
impl OneLineForm for RawRule {
    const DESCRIPTION: &'static str = "A one-line rule `PATTERN SUBSTITUTION [FLAGS]` (optionally after the keyword `RewriteRule`), a `RewriteCond TESTSTRING CONDPATTERN [FLAGS]` line for the next rule, or a `#` comment.";
}

#[cfg(feature = "schema")]
impl OneLineForm for RawCondition {
    const DESCRIPTION: &'static str = "A one-line condition `TESTSTRING CONDPATTERN [FLAGS]`, e.g. `%{HTTP:x-tenant} =beta [NC]`.";
}

/// Either form, as serde takes it: a string (never blank) or the structured object. Written as
/// if/then/else on the type rather than `oneOf`, so that a mistake inside the object is reported
/// at its field rather than as "matches neither form".
#[cfg(feature = "schema")]
impl<T: schemars::JsonSchema + OneLineForm> schemars::JsonSchema for StringOr<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("StringOr{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "if": {"type": "string"},
            "then": {"pattern": r"\S", "description": T::DESCRIPTION},
            "else": generator.subschema_for::<T>()
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StringOr<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringOrVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for StringOrVisitor<T> {
            type Value = StringOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOr::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                // Deserializing through the same MapAccess keeps the field path for errors.
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(StringOr::Object)
            }
        }
        deserializer.deserialize_any(StringOrVisitor(PhantomData))
    }
}

/// Parses and compiles the plugin configuration.
pub fn load(bytes: &[u8]) -> Result<RuleSet, ConfigError> {
    let raw: RawConfig = parse_config(bytes)?;
    compile(raw)
}

fn compile(raw: RawConfig) -> Result<RuleSet, ConfigError> {
    if raw.max_rule_applications == 0 {
        return Err(ConfigError::new(
            "max_rule_applications",
            "must be at least 1",
        ));
    }
    if raw.max_path_length == 0 {
        return Err(ConfigError::new("max_path_length", "must be at least 1"));
    }
    let upstreams = upstreams(raw.upstreams)?;
    let mut rules: Vec<Rule> = Vec::new();
    // `RewriteCond` lines wait here for the rule they belong to, with their index and text.
    let mut pending: Vec<(usize, String, Condition)> = Vec::new();
    for (index, entry) in raw.rules.into_iter().enumerate() {
        let field = format!("rules[{index}]");
        match entry {
            StringOr::Text(text) => {
                let line = text.trim();
                if line.starts_with('#') {
                    continue; // A comment, as in Apache configuration files.
                }
                if let Some(cond) = strip_keyword(line, "RewriteCond") {
                    let condition = text_condition(cond).map_err(|e| {
                        ConfigError::new(&field, format!("condition `{text}`: {e}"))
                    })?;
                    pending.push((index, text, condition));
                    continue;
                }
                let body = strip_keyword(line, "RewriteRule").unwrap_or(line);
                let conditions = pending.drain(..).map(|(_, _, c)| c).collect();
                let rule = text_rule(index, &text, body, None, conditions, &upstreams)
                    .map_err(|e| ConfigError::new(&field, format!("rule `{text}`: {e}")))?;
                rules.push(rule);
            }
            StringOr::Object(raw_rule) => {
                let mut conditions: Vec<Condition> = pending.drain(..).map(|(_, _, c)| c).collect();
                for (j, cond) in raw_rule.conditions.iter().enumerate() {
                    let condition = match cond {
                        StringOr::Text(text) => text_condition(text.trim())
                            .map_err(|e| ("", format!("condition `{text}`: {e}"))),
                        StringOr::Object(object) => structured_condition(object),
                    }
                    .map_err(|(part, e)| {
                        ConfigError::new(format!("{field}.conditions[{j}]{part}"), e)
                    })?;
                    conditions.push(condition);
                }
                let rule = object_rule(index, &raw_rule, conditions, &upstreams)?;
                rules.push(rule);
            }
        }
    }
    if let Some((index, text, _)) = pending.first() {
        return Err(ConfigError::new(
            format!("rules[{index}]"),
            format!("condition `{text}` is not followed by a rule"),
        ));
    }
    check_names(&rules)?;
    let forwarding = Forwarding {
        preserve_host: raw.preserve_host,
        send_original_path: raw.send_original_path,
    };
    Ok(
        RuleSet::new(rules, raw.max_rule_applications, raw.max_path_length)
            .forwarding_as(forwarding),
    )
}

/// `RewriteRule ^/a /b` → `^/a /b` (case-insensitive keyword followed by whitespace).
fn strip_keyword<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let head = line.get(..keyword.len())?;
    let rest = line.get(keyword.len()..)?;
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

fn text_rule(
    index: usize,
    text: &str,
    body: &str,
    name: Option<&str>,
    conditions: Vec<Condition>,
    upstreams: &Upstreams,
) -> Result<Rule, String> {
    let line = syntax::split(body)?;
    let [pattern, substitution] = line.words.as_slice() else {
        return Err(format!(
            "a rule is `PATTERN SUBSTITUTION [FLAGS]`, this has {} word(s) before the flags",
            line.words.len()
        ));
    };
    let parts = Parts {
        pattern,
        substitution,
        flags: &line.flags,
    };
    let label = name.map_or_else(|| index.to_string(), str::to_string);
    Rule::compile(
        index,
        text.to_string(),
        label,
        &parts,
        conditions,
        upstreams,
    )
}

fn object_rule(
    index: usize,
    raw: &RawRule,
    conditions: Vec<Condition>,
    upstreams: &Upstreams,
) -> Result<Rule, ConfigError> {
    let field = format!("rules[{index}]");
    if let Some(name) = &raw.name {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!(
                    "`{name}`: a rule name is 1 to 64 letters, digits, `_` or `-` (it names a metric)"
                ),
            ));
        }
    }
    let name = raw.name.as_deref();
    let label = name.map_or_else(|| index.to_string(), str::to_string);
    match (&raw.rule, &raw.pattern, &raw.substitution) {
        (Some(text), None, None) if raw.flags.is_none() => {
            text_rule(index, text, text.trim(), name, conditions, upstreams).map_err(|e| {
                ConfigError::new(format!("{field}.rule"), format!("rule `{text}`: {e}"))
            })
        }
        (Some(_), _, _) => Err(ConfigError::new(
            &field,
            "give either `rule` or `pattern`/`substitution`/`flags`, not both",
        )),
        (None, Some(pattern), Some(substitution)) => {
            let flags = raw.flags.clone().unwrap_or_default();
            let text = if flags.is_empty() {
                format!("{pattern} {substitution}")
            } else {
                format!("{pattern} {substitution} [{}]", flags.join(","))
            };
            let parts = Parts {
                pattern,
                substitution,
                flags: &flags,
            };
            Rule::compile(index, text.clone(), label, &parts, conditions, upstreams)
                .map_err(|e| ConfigError::new(&field, format!("rule `{text}`: {e}")))
        }
        (None, None, _) => Err(ConfigError::new(&field, "missing `pattern` (or `rule`)")),
        (None, Some(_), None) => Err(ConfigError::new(
            &field,
            "missing `substitution` (use \"-\" to leave the path unchanged)",
        )),
    }
}

/// `TESTSTRING CONDPATTERN [FLAGS]`.
fn text_condition(text: &str) -> Result<Condition, String> {
    let line = syntax::split(text)?;
    let [test, pattern] = line.words.as_slice() else {
        return Err(format!(
            "a condition is `TESTSTRING CONDPATTERN [FLAGS]`, this has {} word(s) before the flags",
            line.words.len()
        ));
    };
    Condition::new(test, pattern, CondFlags::parse(&line.flags)?)
}

/// On error, the part of the condition to name after its path (`.on`, or `""` for the whole
/// condition) and the reason.
fn structured_condition(raw: &RawCondition) -> Result<Condition, (&'static str, String)> {
    let test = match raw.on.as_str() {
        "method" => "%{REQUEST_METHOD}".to_string(),
        "host" => "%{HTTP_HOST}".to_string(),
        "path" => "%{REQUEST_URI}".to_string(),
        "query" => "%{QUERY_STRING}".to_string(),
        "scheme" => "%{REQUEST_SCHEME}".to_string(),
        other => match other.strip_prefix("header:") {
            Some(header) => format!("%{{HTTP:{header}}}"),
            None if other.contains("%{") || other.contains('$') => other.to_string(),
            None => {
                return Err((
                    ".on",
                    format!(
                        "`on`: unknown `{other}` (use method, host, path, query, scheme, \
                         header:<name>, or a test string such as %{{HTTP:x-tenant}})"
                    ),
                ));
            }
        },
    };
    let pattern = match (&raw.matches, &raw.equals) {
        (Some(regex), None) => regex.clone(),
        (None, Some(text)) => format!("={text}"),
        _ => {
            return Err((
                "",
                "give exactly one of `matches` (a regex) and `equals` (a text)".into(),
            ));
        }
    };
    let pattern = if raw.negate {
        format!("!{pattern}")
    } else {
        pattern
    };
    let flags = CondFlags {
        nocase: raw.nocase,
        or_next: raw.or,
    };
    Condition::new(&test, &pattern, flags).map_err(|e| ("", e))
}

fn upstreams(raw: BTreeMap<String, String>) -> Result<Upstreams, ConfigError> {
    let mut out = Upstreams::new();
    for (authority, cluster) in raw {
        let field = format!("upstreams.{authority}");
        let plain_authority = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if !plain_authority {
            return Err(ConfigError::new(
                field,
                "the key must be a target authority such as `localhost:3002` (host[:port], no scheme or path)",
            ));
        }
        let valid_cluster = !cluster.is_empty() && cluster.bytes().all(|b| b.is_ascii_graphic());
        if !valid_cluster {
            return Err(ConfigError::new(
                field,
                format!("`{cluster}` is not a usable cluster name (non-empty, no spaces)"),
            ));
        }
        if out
            .insert(authority.to_ascii_lowercase(), cluster)
            .is_some()
        {
            return Err(ConfigError::new(
                field,
                "given twice (authorities ignore case)",
            ));
        }
    }
    Ok(out)
}

/// Names label metrics, so two rules may not share one.
fn check_names(rules: &[Rule]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        if let Some(other) = rules
            .get(..i)
            .and_then(|before| before.iter().find(|r| r.label == rule.label))
        {
            return Err(ConfigError::new(
                format!("rules[{}].name", rule.index),
                format!(
                    "`{}` is already the name of rules[{}]",
                    rule.label, other.index
                ),
            ));
        }
    }
    Ok(())
}
