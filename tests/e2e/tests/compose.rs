//! docker-compose cannot run here (no Docker engine), so the compose file is checked statically:
//! `docker-compose config` accepts it, everything it builds or mounts exists, and Envoy gets the
//! config rendered from the one template; with the `docker-compose.chain.yml` override, it gets
//! the same config with the one-module chain, and the images carry `chain.wasm`. Envoy itself
//! validates both configs, filters and their configurations included.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use xtask::compose::{
    render_chain_for_compose, render_for_compose, rendered_chain_path, rendered_path,
};
use xtask::envoy::{ENVOY_VERSION, envoy_binary};
use xtask::paths::{CHAIN, FILTERS, root, run_dir, wasm_dir};

fn compose_config() -> Value {
    compose_config_of(&["docker-compose.yml"])
}

/// `docker-compose config` of `files`, merged in order as `-f` merges them.
fn compose_config_of(files: &[&str]) -> Value {
    let output = Command::new("docker-compose")
        .args(files.iter().flat_map(|f| ["-f", f]))
        .arg("config")
        .current_dir(root())
        .output()
        .expect("docker-compose (Debian package docker-compose) must be installed: `cargo xtask test` installs it");
    assert!(
        output.status.success(),
        "docker-compose config refused the file:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::from_slice(&output.stdout).unwrap()
}

fn service<'a>(config: &'a Value, name: &str) -> &'a Value {
    config["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

/// Bind-mount sources of a service, as absolute paths (`docker-compose config` resolves them).
fn bind_sources(service: &Value) -> Vec<(PathBuf, String)> {
    service["volumes"]
        .as_sequence()
        .map(|volumes| {
            volumes
                .iter()
                .filter_map(|v| {
                    let (source, target) = match v {
                        Value::String(s) => {
                            let mut parts = s.split(':');
                            (parts.next()?.to_owned(), parts.next()?.to_owned())
                        }
                        Value::Mapping(_) => (
                            v["source"].as_str()?.to_owned(),
                            v["target"].as_str()?.to_owned(),
                        ),
                        _ => return None,
                    };
                    source
                        .starts_with('/')
                        .then(|| (PathBuf::from(source), target))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The committed file at `path` is what the renderer makes now.
fn assert_fresh(path: &Path, rendered: &str) {
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed == rendered,
        "{} is stale: run `cargo xtask render` and commit it",
        path.display()
    );
}

#[test]
fn envoy_gets_the_rendered_config_and_it_is_up_to_date() {
    assert_fresh(&rendered_path(), &render_for_compose().unwrap());
    let config = compose_config();
    let envoy = service(&config, "envoy");
    let mounts = bind_sources(envoy);
    assert!(
        mounts
            .iter()
            .any(|(source, target)| source == &rendered_path() && target == "/etc/envoy/envoy.yaml"),
        "envoy must mount the rendered config: {mounts:?}"
    );
    assert_eq!(
        envoy["image"].as_str(),
        Some(format!("envoyproxy/envoy:v{ENVOY_VERSION}").as_str()),
        "the official Envoy image of the version we test against"
    );
}

#[test]
fn the_chain_override_gives_envoy_the_chain_config_and_it_is_up_to_date() {
    assert_fresh(&rendered_chain_path(), &render_chain_for_compose().unwrap());
    let config = compose_config_of(&["docker-compose.yml", "docker-compose.chain.yml"]);
    let mounts = bind_sources(service(&config, "envoy"));
    let at_config: Vec<&PathBuf> = mounts
        .iter()
        .filter(|(_, target)| target == "/etc/envoy/envoy.yaml")
        .map(|(source, _)| source)
        .collect();
    assert_eq!(at_config, [&rendered_chain_path()], "{mounts:?}");
    // Everything else is the base file's.
    let base = compose_config();
    for name in ["setup", "authz", "notes-api", "demo-client"] {
        assert_eq!(service(&config, name), service(&base, name), "{name}");
    }
}

#[test]
fn everything_the_compose_file_builds_or_mounts_exists() {
    let config = compose_config();
    let services = config["services"].as_mapping().unwrap();
    for name in ["setup", "authz", "notes-api", "demo-client", "envoy"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if let Some(build) = service.get("build") {
            let context = PathBuf::from(build["context"].as_str().unwrap());
            assert!(context.is_dir(), "{name}: build context {context:?}");
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
            let text = std::fs::read_to_string(&dockerfile)
                .unwrap_or_else(|e| panic!("{name}: {dockerfile:?}: {e}"));
            let target = build["target"].as_str().unwrap();
            assert!(
                text.lines()
                    .any(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}"))),
                "{name}: no stage `{target}` in {dockerfile:?}"
            );
        }
        for (source, _) in bind_sources(service) {
            assert!(source.exists(), "{name}: mounted {source:?} does not exist");
        }
    }
}

#[test]
fn the_images_contain_what_the_envoy_config_loads() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let envoy_config = render_for_compose().unwrap();
    let chain_config = render_chain_for_compose().unwrap();
    let loaded = FILTERS
        .map(|(_, stem)| (stem, &envoy_config))
        .into_iter()
        .chain([(CHAIN.1, &chain_config)]);
    for (stem, config) in loaded {
        let wasm = format!("/etc/wasmgate/filters/{stem}.wasm");
        assert!(config.contains(&wasm), "Envoy config does not load {wasm}");
        // Where `xtask package` leaves every module, its exports trimmed; a module taken from
        // cargo's own output directories would not be.
        assert!(
            dockerfile.contains(&format!("/src/target/wasm32-wasip1/wasm/{stem}.wasm")),
            "the setup image does not ship the built {stem}.wasm"
        );
    }
    // The filters are built the way `cargo xtask build` builds them, not by plain cargo commands.
    assert!(dockerfile.contains("&& target/release/xtask package"));
    assert!(!dockerfile.contains("--target wasm32-wasip1"));
    // ... which shrinks the chain with binaryen's wasm-opt: the build stage must have it.
    let build_stage = dockerfile
        .split("\nFROM ")
        .find(|stage| stage.contains(" AS build\n"))
        .unwrap();
    assert!(build_stage.contains("apt-get install -y --no-install-recommends binaryen"));
    for binary in ["authz-service", "wasmgate-demo", "xtask"] {
        assert!(
            dockerfile.contains(&format!("target/release/{binary}")),
            "{binary} not copied"
        );
    }
}

#[test]
fn only_the_gateway_ports_are_published() {
    let config = compose_config();
    for (name, service) in config["services"].as_mapping().unwrap() {
        let ports: Vec<String> = service["ports"]
            .as_sequence()
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| match p {
                        Value::Mapping(_) => format!(
                            "{}:{}",
                            p["published"]
                                .as_u64()
                                .map(|n| n.to_string())
                                .or_else(|| p["published"].as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            p["target"].as_u64().unwrap_or_default()
                        ),
                        other => other.as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let expected: Vec<String> = if name.as_str() == Some("envoy") {
            vec!["8080:8080".into(), "8443:8443".into()]
        } else {
            Vec::new()
        };
        assert_eq!(ports, expected, "published ports of {name:?}");
    }
}

/// `envoy --mode validate` on `config` (the container's paths pointed at this checkout's filters
/// and certificates); validation also creates the wasm plugins and runs their configuration.
fn envoy_validates(name: &str, config: &str) -> (bool, String) {
    let (certs, _) = xtask::certs::ensure(&xtask::paths::certs_dir()).unwrap();
    let certs_dir = certs.ca_cert.parent().unwrap().display().to_string();
    let local = config
        .replace("/etc/wasmgate/filters", &wasm_dir().display().to_string())
        .replace("/etc/wasmgate/certs", &certs_dir);
    let dir = run_dir().join(format!("test-compose-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, local).unwrap();
    let out = Command::new(envoy_binary())
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(&path)
        .output()
        .expect("Envoy must be installed: `cargo xtask test` installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn envoy_accepts_both_configs_docker_compose_mounts() {
    for (name, config) in [
        ("three-filters", render_for_compose().unwrap()),
        ("chain", render_chain_for_compose().unwrap()),
    ] {
        let (ok, output) = envoy_validates(name, &config);
        assert!(ok && output.contains(" OK"), "{name}: {output}");
        // The check can fail: a filter section the filter refuses fails validation.
        // The JSON sits in a YAML string, its quotes escaped or not depending on the quoting.
        let broken = [
            (r#""limit":100"#, r#""limit":-1"#),
            (r#"\"limit\":100"#, r#"\"limit\":-1"#),
        ]
        .iter()
        .map(|(from, to)| config.replacen(from, to, 1))
        .find(|changed| *changed != config)
        .unwrap_or_else(|| panic!("{name}: no rate limit to break"));
        let (ok, output) = envoy_validates(&format!("{name}-broken"), &broken);
        assert!(!ok, "{name}: a limit of -1 was accepted: {output}");
        assert!(output.contains("policies[0].limit"), "{name}: {output}");
    }
}
