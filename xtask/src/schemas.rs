//! `schemas`: the JSON Schema of each filter's configuration, generated from the filter's own
//! serde config types (feature `schema`), so the published schema cannot drift from what the
//! filter accepts. The files under `schemas/` are committed (editors fetch them by `$id`) and a
//! test checks that they are the generated ones, like the rendered compose config.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use crate::paths::{FILTERS, root};

/// Where the committed schemas are published: `$id` is the raw file on the main branch, so an
/// editor given only the `$id` (or a `$schema` pointing at it) can fetch the schema.
const ID_BASE: &str = "https://raw.githubusercontent.com/wasmgate/wasmgate/main/schemas/";

/// `schemas/` in the workspace.
pub fn schemas_dir() -> PathBuf {
    root().join("schemas")
}

/// `schemas/<package>.schema.json`.
pub fn schema_path(package: &str) -> PathBuf {
    schemas_dir().join(format!("{package}.schema.json"))
}

/// The schema of a filter (by package name) as generated from its config types, with `$id` and
/// `title`.
pub fn schema(package: &str) -> Result<Value> {
    let generated = match package {
        "bearer-auth" => bearer_auth::config::json_schema(),
        "rate-limit" => rate_limit::config::json_schema(),
        "route-rewrite" => route_rewrite::config::json_schema(),
        other => bail!("no schema for `{other}`: not one of the filters"),
    };
    let mut value = generated.to_value();
    let Some(object) = value.as_object_mut() else {
        bail!("the generated schema of {package} is not an object");
    };
    object.insert(
        "$id".to_owned(),
        format!("{ID_BASE}{package}.schema.json").into(),
    );
    object.insert(
        "title".to_owned(),
        format!("wasmgate {package} filter configuration").into(),
    );
    Ok(value)
}

/// The file content of a filter's schema: pretty-printed in a fixed key order, newline-ended.
pub fn render(package: &str) -> Result<String> {
    let schema = schema(package)?;
    let mut out = serde_json::to_string_pretty(&Ordered {
        value: &schema,
        names: false,
    })?;
    out.push('\n');
    Ok(out)
}

/// Writes every filter's schema; returns each path and whether it changed.
pub fn write_all() -> Result<Vec<(PathBuf, bool)>> {
    fs::create_dir_all(schemas_dir())?;
    FILTERS
        .iter()
        .map(|(package, _)| {
            let path = schema_path(package);
            let fresh = render(package)?;
            if fs::read_to_string(&path).is_ok_and(|old| old == fresh) {
                return Ok((path, false));
            }
            fs::write(&path, fresh).with_context(|| format!("cannot write {}", path.display()))?;
            Ok((path, true))
        })
        .collect()
}

/// The committed schemas that differ from the generated ones (or are missing).
pub fn stale() -> Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    for (package, _) in FILTERS {
        let path = schema_path(package);
        if fs::read_to_string(&path).ok() != Some(render(package)?) {
            stale.push(path);
        }
    }
    Ok(stale)
}

/// Keywords that tell a reader what they are looking at come first in every schema object, in
/// this order; the rest follow alphabetically, `$defs` last. Without a fixed order the output
/// would depend on whether some crate in the build enables serde_json's `preserve_order`.
const LEADING_KEYWORDS: [&str; 9] = [
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "$ref",
    "if",
    "then",
    "else",
];

/// A JSON value serialized with schema objects in [`LEADING_KEYWORDS`] order. `names` is true
/// for maps whose keys are names, not keywords (`properties`, `$defs`), which stay alphabetical.
struct Ordered<'a> {
    value: &'a Value,
    names: bool,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(map) => {
                let rank = |key: &str| -> usize {
                    if self.names {
                        return 1;
                    }
                    match key {
                        "$defs" => LEADING_KEYWORDS.len() + 1,
                        _ => LEADING_KEYWORDS
                            .iter()
                            .position(|k| *k == key)
                            .unwrap_or(LEADING_KEYWORDS.len()),
                    }
                };
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    // Under these keywords the keys are property or definition names.
                    let names = !self.names
                        && matches!(
                            key.as_str(),
                            "properties" | "$defs" | "patternProperties" | "dependentSchemas"
                        );
                    out.serialize_entry(key, &Ordered { value, names })?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for value in items {
                    out.serialize_element(&Ordered {
                        value,
                        names: false,
                    })?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// Turns a JSON pointer into the instance (`/rules/0/limit`) into the field notation of our
/// configuration errors (`rules[0].limit`, as serde_path_to_error writes it). The instance
/// decides whether a segment is an array index or an object key (an `upstreams` key may be
/// `0`). The empty pointer (the whole configuration) is the empty string.
pub fn field_of_pointer(instance: &Value, pointer: &str) -> String {
    let mut field = String::new();
    let mut at = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match at {
            Some(Value::Array(items)) => {
                field.push_str(&format!("[{segment}]"));
                at = segment.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(&segment);
                at = other.and_then(|v| v.get(&segment));
            }
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointers_become_our_field_notation() {
        let config = json!({
            "policies": [{"name": "a", "key": ["path"]}],
            "upstreams": {"0": "c", "a/b": "d"}
        });
        assert_eq!(field_of_pointer(&config, ""), "");
        assert_eq!(field_of_pointer(&config, "/policies"), "policies");
        assert_eq!(
            field_of_pointer(&config, "/policies/0/key/0"),
            "policies[0].key[0]"
        );
        assert_eq!(field_of_pointer(&config, "/upstreams/0"), "upstreams.0");
        assert_eq!(
            field_of_pointer(&config, "/upstreams/a~1b"),
            "upstreams.a/b"
        );
        // A field that is not in the instance (a missing required one) is still named.
        assert_eq!(
            field_of_pointer(&config, "/policies/0/limit"),
            "policies[0].limit"
        );
    }

    #[test]
    fn schema_objects_lead_with_their_identity_and_keep_names_alphabetical() {
        let value = json!({
            "type": "object", "$defs": {"B": {}, "A": {}}, "additionalProperties": false,
            "title": "t", "$schema": "s",
            "properties": {"title": {"type": "string", "description": "d"}, "a": {}}
        });
        let text = serde_json::to_string(&Ordered {
            value: &value,
            names: false,
        })
        .unwrap();
        assert_eq!(
            text,
            r#"{"$schema":"s","title":"t","type":"object","additionalProperties":false,"properties":{"a":{},"title":{"description":"d","type":"string"}},"$defs":{"A":{},"B":{}}}"#
        );
    }

    #[test]
    fn every_filter_has_a_schema_with_id_and_title() {
        for (package, _) in FILTERS {
            let schema = schema(package).unwrap();
            assert_eq!(
                schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
            assert!(
                schema["$id"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/schemas/{package}.schema.json"))
            );
            assert!(schema["title"].as_str().unwrap().contains(package));
        }
    }
}
