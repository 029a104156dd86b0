//! The manifests under `deploy/`: rendered from `envoy/filters/*.json` (so they cannot drift
//! from the config the local stack and its tests use), valid against Istio's published CRD
//! schemas (npm `@kubernetes-models/istio`, run by node) and against our JSON Schema of Envoy
//! Gateway's CRD (`deploy/validate/envoyextensionpolicy.schema.json`, Rust `jsonschema`); and
//! deliberately broken copies are rejected by both validators, so the checks can fail.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use xtask::deploy::{RENDERED_DIRS, Rendered, render_all};
use xtask::paths::{CHAIN, FILTERS, deploy_dir};

fn read_yaml(path: &Path) -> Value {
    serde_yaml::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn istio_file(package: &str) -> PathBuf {
    deploy_dir().join("istio").join(format!("{package}.yaml"))
}

fn gateway_file() -> PathBuf {
    deploy_dir().join("envoy-gateway/envoy-extension-policy.yaml")
}

fn chain_istio_file() -> PathBuf {
    deploy_dir().join("chain/istio-wasm-plugin.yaml")
}

fn chain_gateway_file() -> PathBuf {
    deploy_dir().join("chain/envoy-extension-policy.yaml")
}

#[test]
fn deploy_is_what_render_makes_from_the_filter_configs() {
    // The digests as committed (tests/oci.rs checks them against the built images), so this
    // test is about the rest: the filter configs, phases, failure policies.
    let digest = |file: PathBuf| {
        read_yaml(&file)["spec"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut digests: BTreeMap<String, String> = FILTERS
        .iter()
        .map(|(package, _)| ((*package).to_owned(), digest(istio_file(package))))
        .collect();
    digests.insert(CHAIN.0.to_owned(), digest(chain_istio_file()));
    let rendered = render_all(&digests).unwrap();
    for Rendered { path, text } in &rendered {
        let committed = fs::read_to_string(deploy_dir().join(path)).unwrap_or_default();
        assert!(
            &committed == text,
            "deploy/{} is not what `cargo xtask render` makes from envoy/filters/: run it and commit deploy/",
            path.display()
        );
    }
    for dir in RENDERED_DIRS {
        for entry in fs::read_dir(deploy_dir().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(deploy_dir()).unwrap();
            assert!(
                rendered.iter().any(|r| r.path == relative),
                "deploy/{} is not rendered by `cargo xtask render`",
                relative.display()
            );
        }
    }
}

#[test]
fn plugin_configs_are_the_filter_configs_as_yaml() {
    let mesh = xtask::deploy::Mesh::istio();
    for (package, _) in FILTERS {
        let manifest = read_yaml(&istio_file(package));
        assert_eq!(
            manifest["spec"]["pluginConfig"],
            xtask::deploy::filter_config(package, &mesh).unwrap(),
            "{package}"
        );
        assert_eq!(manifest["spec"]["pluginName"], package, "the root_id");
    }
    let policy = read_yaml(&gateway_file());
    let mesh = xtask::deploy::Mesh::envoy_gateway();
    let wasm = policy["spec"]["wasm"].as_array().unwrap();
    let order: Vec<&str> = wasm.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(order, ["bearer-auth", "rate-limit", "route-rewrite"]);
    for entry in wasm {
        let package = entry["name"].as_str().unwrap();
        assert_eq!(
            entry["config"],
            xtask::deploy::filter_config(package, &mesh).unwrap()
        );
    }
}

#[test]
fn the_chain_manifests_carry_each_filters_config_as_its_section() {
    for (file, mesh, pointer) in [
        (
            chain_istio_file(),
            xtask::deploy::Mesh::istio(),
            "/spec/pluginConfig",
        ),
        (
            chain_gateway_file(),
            xtask::deploy::Mesh::envoy_gateway(),
            "/spec/wasm/0/config",
        ),
    ] {
        let manifest = read_yaml(&file);
        let config = manifest.pointer(pointer).unwrap();
        let sections: Vec<&String> = config.as_object().unwrap().keys().collect();
        assert_eq!(
            sections,
            ["bearer_auth", "rate_limit", "route_rewrite"],
            "{}",
            file.display()
        );
        for (package, stem) in FILTERS {
            assert_eq!(
                config[stem],
                xtask::deploy::filter_config(package, &mesh).unwrap(),
                "{} ({stem})",
                file.display()
            );
        }
    }
    let plugin = &read_yaml(&chain_istio_file())["spec"];
    assert_eq!(plugin["pluginName"], "chain", "the root_id");
    assert_eq!(plugin["phase"], "AUTHN", "bearer-auth is its first stage");
    assert_eq!(plugin["failStrategy"], "FAIL_CLOSE");
    assert!(
        plugin["url"]
            .as_str()
            .unwrap()
            .starts_with("oci://registry.example.com/wasmgate/chain:")
    );
    let policy = read_yaml(&chain_gateway_file());
    assert_eq!(policy["spec"]["wasm"].as_array().unwrap().len(), 1);
    assert_eq!(policy["spec"]["wasm"][0]["rootID"], "chain");
    assert_eq!(policy["spec"]["wasm"][0]["failOpen"], false);
    // Not the three filters' policy: applied by mistake next to it, it is a second object.
    assert_ne!(
        policy["metadata"]["name"],
        read_yaml(&gateway_file())["metadata"]["name"]
    );
}

#[test]
fn istio_orders_the_filters_and_fails_closed_on_authentication() {
    let spec = |package| read_yaml(&istio_file(package))["spec"].clone();
    assert_eq!(spec("bearer-auth")["phase"], "AUTHN");
    assert_eq!(spec("rate-limit")["phase"], "AUTHZ");
    assert_eq!(spec("route-rewrite")["phase"], "STATS");
    assert_eq!(spec("bearer-auth")["failStrategy"], "FAIL_CLOSE");
    let url = spec("bearer-auth")["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("oci://") && url.ends_with(&format!(":{}", xtask::oci::TAG)));
    let policy = read_yaml(&gateway_file());
    assert_eq!(policy["spec"]["wasm"][0]["failOpen"], false);
}

// --- Istio: the CRD schemas of @kubernetes-models/istio, by node -------------------------------

/// Installs the validator once per test run (`npm ci`, skipped when already installed).
fn node_modules() -> &'static Path {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES.get_or_init(|| xtask::tools::ensure_node_validator().unwrap())
}

/// Runs `deploy/validate/validate.mjs` on `files`: (success, output).
fn node_validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("node")
        .arg(deploy_dir().join("validate/validate.mjs"))
        .args(files)
        .env("WASMGATE_NODE_MODULES", node_modules())
        .output()
        .expect("node must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn istio_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(deploy_dir().join("istio"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn istio_manifests_are_valid_against_istios_crd_schemas() {
    let files = istio_files();
    assert_eq!(files.len(), FILTERS.len() + 1, "{files:?}");
    let (ok, output) = node_validate(&files);
    assert!(ok, "{output}");
    assert_eq!(
        output.lines().filter(|l| l.starts_with("ok ")).count(),
        files.len(),
        "{output}"
    );
    assert!(
        output.contains("WasmPlugin/wasmgate-bearer-auth"),
        "{output}"
    );
    assert!(
        output.contains("EnvoyFilter/wasmgate-upstream-header"),
        "{output}"
    );
}

#[test]
fn the_chains_istio_manifest_is_valid_against_istios_crd_schema() {
    let (ok, output) = node_validate(&[chain_istio_file()]);
    assert!(ok, "{output}");
    assert!(output.starts_with("ok "), "{output}");
    assert!(output.contains("WasmPlugin/wasmgate-chain"), "{output}");
}

#[test]
fn broken_istio_manifests_are_rejected() {
    let good = fs::read_to_string(istio_file("bearer-auth")).unwrap();
    let scratch = std::env::temp_dir().join(format!("wasmgate-istio-{}", std::process::id()));
    fs::create_dir_all(&scratch).unwrap();
    let digest = read_yaml(&istio_file("bearer-auth"))["spec"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            "phase",
            "phase: AUTHN",
            "phase: AUTHENTICATION",
            "/spec/phase",
        ),
        (
            "fail-strategy",
            "failStrategy: FAIL_CLOSE",
            "failStrategy: FAIL_SOMETIMES",
            "/spec/failStrategy",
        ),
        (
            "digest-prefix",
            &format!("sha256: \"{digest}\""),
            &format!("sha256: \"sha256:{digest}\""),
            "/spec/sha256",
        ),
        (
            "priority",
            "phase: AUTHN",
            "phase: AUTHN\n  priority: high",
            "/spec/priority",
        ),
    ];
    for (name, from, to, field) in cases {
        assert!(good.contains(from), "{name}: {from}");
        let path = scratch.join(format!("{name}.yaml"));
        fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let (ok, output) = node_validate(std::slice::from_ref(&path));
        assert!(!ok, "{name} was accepted: {output}");
        assert!(output.starts_with("invalid "), "{name}: {output}");
        assert!(output.contains(&format!("data{field}")), "{name}: {output}");
    }
    fs::remove_dir_all(scratch).unwrap();
}

// --- Envoy Gateway: our JSON Schema of its CRD, by the jsonschema crate -----------------------

fn gateway_validator() -> jsonschema::Validator {
    let path = deploy_dir().join("validate/envoyextensionpolicy.schema.json");
    let schema: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_envoy_gateway_policies_are_valid_against_the_crd_schema() {
    let validator = gateway_validator();
    for file in [gateway_file(), chain_gateway_file()] {
        let policy = read_yaml(&file);
        assert_eq!(
            errors(&validator, &policy),
            Vec::<String>::new(),
            "{}",
            file.display()
        );
    }
}

#[test]
fn broken_envoy_gateway_policies_are_rejected() {
    let validator = gateway_validator();
    let good = read_yaml(&gateway_file());
    let broken: [(&str, &str, Value); 6] = [
        ("unknown code type", "/spec/wasm/0/code/type", json!("OCI")),
        (
            "failOpen as a string",
            "/spec/wasm/1/failOpen",
            json!("false"),
        ),
        (
            "sha256 with its prefix",
            "/spec/wasm/0/code/image/sha256",
            json!(format!("sha256:{}", "a".repeat(64))),
        ),
        (
            "Image without image",
            "/spec/wasm/2/code/image",
            Value::Null,
        ),
        ("no target", "/spec/targetRefs", Value::Null),
        (
            "a target kind it cannot have",
            "/spec/targetRefs/0/kind",
            json!("Service"),
        ),
    ];
    for (name, pointer, value) in broken {
        let mut policy = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = policy
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{name}: {parent}"));
        assert!(
            target.get(key).is_some(),
            "{name}: {pointer} is not in the policy"
        );
        if value.is_null() {
            target.as_object_mut().unwrap().remove(key);
        } else {
            target[key] = value;
        }
        assert!(
            !validator.is_valid(&policy),
            "{name} ({pointer}) was accepted"
        );
    }
    // A misspelt field is an error here, not silently pruned.
    let mut policy = good.clone();
    policy["spec"]["wasm"][0]["failopen"] = json!(true);
    let found = errors(&validator, &policy);
    assert!(!found.is_empty());
}
