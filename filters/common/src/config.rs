//! Parsing a filter's JSON configuration into a ready structure, with errors that name the field.

use std::fmt;

use serde::de::DeserializeOwned;

/// Why a filter configuration was refused. `field` is a JSON path such as `rules[2].path_regex`,
/// so the operator can find the mistake without reading the filter's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.reason)
        } else {
            write!(
                f,
                "invalid configuration: field `{}`: {}",
                self.field, self.reason
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Deserializes `bytes` (the plugin configuration Envoy hands over) into `T`.
/// An empty configuration is parsed as `{}` so that filters whose fields all have defaults
/// can be loaded without any configuration.
pub fn parse_config<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ConfigError::new(field, err.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        limit: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        #[allow(dead_code)]
        policies: Vec<Inner>,
    }

    #[test]
    fn names_the_nested_field_that_is_wrong() {
        let err = parse_config::<Outer>(br#"{"policies":[{"limit":1},{"limit":"x"}]}"#)
            .err()
            .map(|e| e.field);
        assert_eq!(err.as_deref(), Some("policies[1].limit"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse_config::<Outer>(br#"{"polices":[]}"#).err();
        assert!(err.is_some_and(|e| e.reason.contains("unknown field `polices`")));
    }

    #[test]
    fn empty_configuration_means_defaults() {
        assert!(parse_config::<Outer>(b"  ").is_ok_and(|c| c.policies.is_empty()));
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        assert!(parse_config::<Outer>(b"{\"policies\": [").is_err());
    }
}
