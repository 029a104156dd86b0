//! The gateway's Envoy config with the one-module chain (filters/chain) in place of the three
//! filters: what `cargo xtask up --chain` and the chain's end-to-end tests run.
//!
//! It is derived from the config `render` made, never written by hand: the chain's sections are
//! exactly the three filters' configurations there, and everything else (listeners, routes,
//! clusters, TLS) stays as it is, so the two can only differ in how the filters are loaded.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value as Json, json};
use serde_yaml::Value;

use crate::paths::{CHAIN, FILTERS};

/// Replaces, in every HTTP filter list of `rendered`, the three wasmgate filters (in their order)
/// with one `wasmgate.chain` filter running them as stages. Fails if no list holds them.
pub fn with_chain(rendered: &str) -> Result<String> {
    let mut config: Value = serde_yaml::from_str(rendered).context("the rendered config")?;
    let mut replaced = 0;
    replace_in(&mut config, &mut replaced)?;
    if replaced == 0 {
        bail!("no HTTP filter list holds the three wasmgate filters in order");
    }
    Ok(serde_yaml::to_string(&config)?)
}

fn replace_in(value: &mut Value, replaced: &mut usize) -> Result<()> {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                if key.as_str() == Some("http_filters")
                    && let Value::Sequence(filters) = child
                    && replace_filters(filters)?
                {
                    *replaced += 1;
                } else {
                    replace_in(child, replaced)?;
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                replace_in(item, replaced)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `wasmgate.bearer_auth`, `wasmgate.rate_limit`, `wasmgate.route_rewrite`.
fn filter_name(stem: &str) -> String {
    format!("wasmgate.{stem}")
}

/// Replaces the three filters in `filters` if they are there, one after the other.
fn replace_filters(filters: &mut Vec<Value>) -> Result<bool> {
    let first = filter_name(FILTERS[0].1);
    let Some(at) = filters
        .iter()
        .position(|f| f["name"].as_str() == Some(&first))
    else {
        return Ok(false);
    };
    let names: Vec<Option<&str>> = filters
        .iter()
        .skip(at)
        .take(FILTERS.len())
        .map(|f| f["name"].as_str())
        .collect();
    let expected: Vec<String> = FILTERS.iter().map(|(_, stem)| filter_name(stem)).collect();
    if names
        .iter()
        .map(|n| n.unwrap_or(""))
        .ne(expected.iter().map(String::as_str))
    {
        bail!("the wasmgate filters are not {expected:?} in a row: {names:?}");
    }
    let stages: Vec<Value> = filters.drain(at..at + FILTERS.len()).collect();
    let mut sections = Map::new();
    for ((_, stem), stage) in FILTERS.iter().zip(&stages) {
        let text = stage["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .with_context(|| format!("{}: no configuration", filter_name(stem)))?;
        let section: Json = serde_json::from_str(text)
            .with_context(|| format!("{}: its configuration is not JSON", filter_name(stem)))?;
        sections.insert((*stem).to_owned(), section);
    }
    // The chain's module sits next to the filters' (`cargo xtask build` puts them together)
    // and runs on the same runtime.
    let vm_config = &stages[0]["typed_config"]["config"]["vm_config"];
    let module = vm_config["code"]["local"]["filename"]
        .as_str()
        .context("wasmgate.bearer_auth: no local module file")?
        .replace(
            &format!("{}.wasm", FILTERS[0].1),
            &format!("{}.wasm", CHAIN.1),
        );
    let runtime = vm_config["runtime"]
        .as_str()
        .context("wasmgate.bearer_auth: no runtime")?;
    let chain = json!({
        "name": filter_name(CHAIN.1),
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": CHAIN.0,
                "root_id": CHAIN.0,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": Json::Object(sections).to_string(),
                },
                "vm_config": {
                    "vm_id": CHAIN.0,
                    "runtime": runtime,
                    "code": {"local": {"filename": module}},
                },
            },
        },
    });
    filters.insert(at, serde_yaml::to_value(chain)?);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Endpoints, render};
    use std::collections::BTreeMap;

    /// Every mapping under `value` that holds `key`, depth first.
    fn mappings_with<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
        match value {
            Value::Mapping(map) => {
                if map.contains_key(key) {
                    out.push(value);
                }
                map.values()
                    .for_each(|child| mappings_with(child, key, out));
            }
            Value::Sequence(items) => items.iter().for_each(|i| mappings_with(i, key, out)),
            _ => {}
        }
    }

    /// The names in each HTTP filter list of `config`.
    fn http_filter_lists(config: &Value) -> Vec<Vec<String>> {
        let mut holders = Vec::new();
        mappings_with(config, "http_filters", &mut holders);
        holders
            .iter()
            .map(|h| {
                let filters = h["http_filters"].as_sequence().unwrap();
                filters
                    .iter()
                    .map(|f| f["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .collect()
    }

    /// The JSON configuration of the HTTP filter called `name`.
    fn configuration_of(config: &Value, name: &str) -> Json {
        let mut filters = Vec::new();
        mappings_with(config, "typed_config", &mut filters);
        let filter = filters
            .into_iter()
            .find(|f| f["name"].as_str() == Some(name))
            .unwrap();
        let text = filter["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap();
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_chain_takes_the_place_of_the_three_filters_with_their_configs_as_sections() {
        let rendered = render(&Endpoints::local(), &BTreeMap::new()).unwrap();
        let before: Value = serde_yaml::from_str(&rendered).unwrap();
        let after: Value = serde_yaml::from_str(&with_chain(&rendered).unwrap()).unwrap();
        let three: Vec<String> = FILTERS.iter().map(|(_, s)| filter_name(s)).collect();

        let (lists_before, lists_after) = (http_filter_lists(&before), http_filter_lists(&after));
        assert_eq!(lists_before.len(), lists_after.len());
        let mut changed = 0;
        for (was, is) in lists_before.iter().zip(&lists_after) {
            if !was.contains(&three[0]) {
                assert_eq!(is, was, "a list without the filters is left alone");
                continue;
            }
            changed += 1;
            let at = was.iter().position(|n| *n == three[0]).unwrap();
            let mut expected = was.clone();
            expected.splice(at..at + 3, ["wasmgate.chain".to_owned()]);
            assert_eq!(*is, expected, "the other filters keep their places");
        }
        assert_eq!(changed, 1, "{lists_before:?}");

        let chain = configuration_of(&after, "wasmgate.chain");
        for (_, stem) in FILTERS {
            let alone = configuration_of(&before, &filter_name(stem));
            assert_eq!(chain[stem], alone, "{stem}");
        }
        let vm = &configuration_of_vm(&after);
        assert_eq!(vm["vm_id"].as_str(), Some("chain"));
        let file = vm["code"]["local"]["filename"].as_str().unwrap();
        assert!(file.ends_with("/chain.wasm"), "{file}");
    }

    fn configuration_of_vm(config: &Value) -> Value {
        let mut filters = Vec::new();
        mappings_with(config, "typed_config", &mut filters);
        let chain = filters
            .into_iter()
            .find(|f| f["name"].as_str() == Some("wasmgate.chain"))
            .unwrap();
        chain["typed_config"]["config"]["vm_config"].clone()
    }

    #[test]
    fn a_config_without_the_three_filters_in_a_row_is_an_error() {
        let none = "http_filters:\n- name: envoy.filters.http.router\n";
        assert!(with_chain(none).is_err());
        let out_of_order = "http_filters:\n- name: wasmgate.bearer_auth\n\
                            - name: wasmgate.route_rewrite\n- name: wasmgate.rate_limit\n";
        let error = with_chain(out_of_order).unwrap_err().to_string();
        assert!(error.contains("in a row"), "{error}");
    }
}
