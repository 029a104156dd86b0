//! The chain's configuration: one optional section per filter, each exactly that filter's own
//! configuration, checked by the filter's own loader so that an error names the field as
//! `<section>.<field>`. The order of the stages is fixed (DESIGN.md's filter order), not
//! configurable: bearer-auth must have vouched for the caller before rate-limit keys on it.

use serde_json::{Map, Value};
use wasmgate_filter_common::ConfigError;

/// A filter the chain can run, in the order the chain runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BearerAuth,
    RateLimit,
    RouteRewrite,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::BearerAuth, Stage::RateLimit, Stage::RouteRewrite];

    /// The section's key in the chain's configuration.
    pub fn key(self) -> &'static str {
        match self {
            Stage::BearerAuth => "bearer_auth",
            Stage::RateLimit => "rate_limit",
            Stage::RouteRewrite => "route_rewrite",
        }
    }

    fn check(self, section: &[u8]) -> Result<(), ConfigError> {
        match self {
            Stage::BearerAuth => bearer_auth::config::Config::from_json(section).map(drop),
            Stage::RateLimit => rate_limit::config::load(section).map(drop),
            Stage::RouteRewrite => route_rewrite::config::load(section).map(drop),
        }
    }
}

/// The stages to run, in order, each with its section as the JSON its filter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    pub stages: Vec<(Stage, Vec<u8>)>,
}

/// Parses and checks the chain's configuration. At least one section is required: a chain of
/// nothing is a mistake, not a pass-through.
pub fn load(bytes: &[u8]) -> Result<ChainConfig, ConfigError> {
    let root: Map<String, Value> = wasmgate_filter_common::parse_config(bytes)?;
    if let Some(unknown) = root
        .keys()
        .find(|k| *k != "$schema" && !Stage::ALL.iter().any(|s| s.key() == k.as_str()))
    {
        return Err(ConfigError::new(
            unknown.clone(),
            format!(
                "unknown section `{unknown}`, expected one of `bearer_auth`, `rate_limit`, `route_rewrite`"
            ),
        ));
    }
    let mut stages = Vec::new();
    for stage in Stage::ALL {
        let Some(section) = root.get(stage.key()) else {
            continue;
        };
        let bytes = serde_json::to_vec(section)
            .map_err(|e| ConfigError::new(stage.key(), e.to_string()))?;
        stage.check(&bytes).map_err(|e| {
            let field = if e.field.is_empty() {
                stage.key().to_owned()
            } else if e.field.starts_with('[') {
                format!("{}{}", stage.key(), e.field)
            } else {
                format!("{}.{}", stage.key(), e.field)
            };
            ConfigError::new(field, e.reason)
        })?;
        stages.push((stage, bytes));
    }
    if stages.is_empty() {
        return Err(ConfigError::new(
            "",
            "no section: give at least one of `bearer_auth`, `rate_limit`, `route_rewrite`",
        ));
    }
    Ok(ChainConfig { stages })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REWRITE: &str = r#"{"rules":[{"rule":"^/a/(.*)$ /b/$1"}]}"#;
    const LIMIT: &str =
        r#"{"policies":[{"name":"p","key":[{"header":"x-k"}],"limit":1,"interval":"1s"}]}"#;

    #[test]
    fn sections_run_in_the_fixed_order_whatever_the_json_order() {
        let json = format!(r#"{{"route_rewrite":{REWRITE},"rate_limit":{LIMIT}}}"#);
        let config = load(json.as_bytes()).map_err(|e| e.to_string());
        let order: Vec<Stage> = config
            .iter()
            .flat_map(|c| c.stages.iter().map(|(s, _)| *s))
            .collect();
        assert_eq!(order, [Stage::RateLimit, Stage::RouteRewrite], "{config:?}");
    }

    #[test]
    fn a_section_is_handed_on_as_the_filter_s_own_json() {
        let json = format!(r#"{{"$schema":"x","route_rewrite":{REWRITE}}}"#);
        let config = load(json.as_bytes()).map_err(|e| e.to_string());
        let section = config.map(|c| c.stages[0].1.clone());
        let parsed: Result<Value, String> =
            section.and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
        assert_eq!(
            parsed,
            serde_json::from_str::<Value>(REWRITE).map_err(|e| e.to_string())
        );
    }

    #[test]
    fn an_error_inside_a_section_names_the_field_under_the_section() {
        let err = load(br#"{"route_rewrite":{"rules":[{"rule":"^/a( /b"}]}}"#).err();
        let field = err.map(|e| e.field);
        assert_eq!(field.as_deref(), Some("route_rewrite.rules[0].rule"));
        let err = load(br#"{"rate_limit":{"policies":[{"name":"p","limit":"x"}]}}"#).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.field.starts_with("rate_limit.policies[0]")),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_sections_and_an_empty_chain_are_refused() {
        let err = load(br#"{"bearer-auth":{}}"#).err();
        assert_eq!(err.map(|e| e.field).as_deref(), Some("bearer-auth"));
        assert!(load(b"{}").is_err());
        assert!(load(b"").is_err());
        assert!(load(b"[1]").is_err());
    }
}
