//! Generating a filter's JSON Schema from its serde config types (feature `schema`, host only).
//!
//! schemars describes the types as serde reads them; two transforms make the result better for
//! the people and tools that read it:
//!
//! - An externally tagged enum (`"anonymous"` or `{"scopes": [...]}`) becomes "a string from this
//!   list, or an object with exactly one of these keys" instead of a `oneOf` of variants. It
//!   accepts the same values, but a mistake inside a variant (`{"remote": {"paht": …}}`) is then
//!   reported by any validator at that field, not as "matches none of the variants" at the enum.
//! - Doc comments wrapped at 100 columns become one line per paragraph (editors render the
//!   descriptions as Markdown and reflow them anyway).

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

/// The draft 2020-12 schema of `T`, with the transforms above.
pub fn root_schema_for<T: JsonSchema>() -> Schema {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    Readable.transform(&mut schema);
    schema
}

struct Readable;

impl Transform for Readable {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        if let Some(object) = schema.as_object_mut() {
            tagged_enum_as_object(object);
            if let Some(Value::String(text)) = object.get_mut("description") {
                *text = unwrap_lines(text);
            }
        }
    }
}

/// Joins the lines of each paragraph with spaces; paragraphs stay apart.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A variant of an externally tagged enum as schemars writes it.
enum Variant {
    /// `{"type": "string", "const": "token", "description": …}`
    Unit(Value),
    /// `{"type": "object", "properties": {"scopes": S}, "required": ["scopes"],
    /// "additionalProperties": false, "description": …}`: the key, S, and the description.
    Keyed(String, Value, Option<Value>),
}

fn variant(schema: &Value) -> Option<Variant> {
    let object = schema.as_object()?;
    if object.get("type").and_then(Value::as_str)? != "string" {
        return keyed_variant(object);
    }
    let unit_keys = ["type", "const", "description"];
    (object.contains_key("const") && object.keys().all(|k| unit_keys.contains(&k.as_str())))
        .then(|| Variant::Unit(schema.clone()))
}

fn keyed_variant(object: &Map<String, Value>) -> Option<Variant> {
    let keys = [
        "type",
        "properties",
        "required",
        "additionalProperties",
        "description",
    ];
    if object.get("type").and_then(Value::as_str)? != "object"
        || object.get("additionalProperties")? != &Value::Bool(false)
        || !object.keys().all(|k| keys.contains(&k.as_str()))
    {
        return None;
    }
    let properties = object.get("properties")?.as_object()?;
    let (key, value) = properties.iter().next().filter(|_| properties.len() == 1)?;
    (object.get("required")? == &json!([key])).then(|| {
        Variant::Keyed(
            key.clone(),
            value.clone(),
            object.get("description").cloned(),
        )
    })
}

/// Rewrites `{"oneOf": [variants]}` of an externally tagged enum with at least one keyed variant
/// as `{"if": {"type": "string"}, "then": {"oneOf": [unit variants]}, "else": {an object with
/// exactly one of the keys}}` (or just the object when there are no unit variants).
fn tagged_enum_as_object(object: &mut Map<String, Value>) {
    let Some(variants) = object
        .get("oneOf")
        .and_then(Value::as_array)
        .and_then(|branches| branches.iter().map(variant).collect::<Option<Vec<_>>>())
    else {
        return;
    };
    let mut units = Vec::new();
    let mut keyed = Map::new();
    for variant in variants {
        match variant {
            Variant::Unit(schema) => units.push(schema),
            Variant::Keyed(key, mut schema, description) => {
                if let (Some(description), Some(fields)) = (description, schema.as_object_mut()) {
                    fields.entry("description").or_insert(description);
                }
                keyed.insert(key, schema);
            }
        }
    }
    if keyed.is_empty() {
        return;
    }
    object.remove("oneOf");
    let one_key = json!({
        "type": "object",
        "properties": keyed,
        "additionalProperties": false,
        "minProperties": 1,
        "maxProperties": 1
    });
    if units.is_empty() {
        if let Value::Object(fields) = one_key {
            object.extend(fields);
        }
    } else {
        object.insert("if".into(), json!({"type": "string"}));
        object.insert("then".into(), json!({"oneOf": units}));
        object.insert("else".into(), one_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    #[derive(schemars::JsonSchema)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Requirement {
        /// No token.
        Anonymous,
        /// A token with these scopes.
        Scopes(Vec<String>),
    }

    #[test]
    fn tagged_enums_become_a_string_or_an_object_with_one_key() {
        let schema = root_schema_for::<Requirement>().to_value();
        assert_eq!(schema["if"], json!({"type": "string"}));
        assert_eq!(
            schema["then"]["oneOf"][0],
            json!({"type": "string", "const": "anonymous", "description": "No token."})
        );
        let object = &schema["else"];
        assert_eq!(object["maxProperties"], 1);
        assert_eq!(object["minProperties"], 1);
        assert_eq!(object["additionalProperties"], false);
        assert_eq!(
            object["properties"]["scopes"]["description"],
            "A token with these scopes."
        );
        assert!(schema.get("oneOf").is_none());
    }

    #[test]
    fn wrapped_lines_are_joined_paragraphs_kept() {
        assert_eq!(unwrap_lines("a b\nc\n\nd\ne"), "a b c\n\nd e");
    }
}
