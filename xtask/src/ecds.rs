//! The ECDS example (`envoy/ecds/`): an Envoy whose rate-limit filter gets its configuration
//! through the Extension Config Discovery Service from a file it watches.
//!
//! This renders the example's bootstrap and its resource file (a DiscoveryResponse), and
//! delivers a resource file the only way Envoy notices: a rename inside the watched directory.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::paths::envoy_dir;
use crate::render::{HostPort, substitute};

/// The ECDS resource name: the filter's name in the HTTP connection manager, and the name of the
/// `TypedExtensionConfig` every delivery carries.
pub const RESOURCE_NAME: &str = "wasmgate.rate_limit";

/// The file Envoy reads, inside the watched directory.
pub const RESOURCE_FILE: &str = "rate-limit.yaml";

/// Envoy's admin stats for this subscription: `<prefix>config_reload`, `<prefix>config_fail`,
/// `<prefix>update_success`, `<prefix>update_rejected`, `<prefix>version_text`, …
pub const STATS_PREFIX: &str = "extension_config_discovery.http_filter.wasmgate.rate_limit.";

/// Every value the example's bootstrap needs.
#[derive(Debug, Clone)]
pub struct EcdsEndpoints {
    pub listen_address: String,
    pub http_port: u16,
    pub admin: HostPort,
    /// The demo notes API behind `/api/`.
    pub notes: HostPort,
    pub wasm_dir: PathBuf,
    /// The watched directory that holds [`RESOURCE_FILE`].
    pub ecds_dir: PathBuf,
}

impl EcdsEndpoints {
    /// The resource file Envoy reads.
    pub fn resource_path(&self) -> PathBuf {
        self.ecds_dir.join(RESOURCE_FILE)
    }
}

fn template(name: &str) -> Result<String> {
    let path = envoy_dir().join("ecds").join(name);
    fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

fn fill(name: &str, variables: &[(&str, String)]) -> Result<String> {
    let variables: BTreeMap<String, String> = variables
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    substitute(&template(name)?, &variables).with_context(|| format!("in envoy/ecds/{name}"))
}

/// The Envoy bootstrap (`envoy/ecds/envoy-ecds.yaml.tmpl`).
pub fn render_bootstrap(e: &EcdsEndpoints) -> Result<String> {
    fill(
        "envoy-ecds.yaml.tmpl",
        &[
            ("ADMIN_ADDRESS", e.admin.host.clone()),
            ("ADMIN_PORT", e.admin.port.to_string()),
            ("LISTEN_ADDRESS", e.listen_address.clone()),
            ("HTTP_PORT", e.http_port.to_string()),
            ("NOTES_HOST", e.notes.host.clone()),
            ("NOTES_PORT", e.notes.port.to_string()),
            ("WASM_DIR", e.wasm_dir.display().to_string()),
            ("ECDS_DIR", e.ecds_dir.display().to_string()),
        ],
    )
}

/// One delivery (`envoy/ecds/rate-limit.ecds.yaml.tmpl`): the rate-limit filter configured with
/// `rate_limit_config` (JSON), announced as `version`.
///
/// The JSON is only checked for being JSON: whether the filter accepts it is for the filter to
/// say, in Envoy, when the delivery arrives.
pub fn render_resource(version: &str, rate_limit_config: &str, wasm_dir: &Path) -> Result<String> {
    let config: serde_json::Value =
        serde_json::from_str(rate_limit_config).context("the rate-limit config is not JSON")?;
    fill(
        "rate-limit.ecds.yaml.tmpl",
        &[
            // JSON string literals are valid YAML double-quoted scalars.
            ("VERSION", serde_json::to_string(version)?),
            (
                "RATE_LIMIT_CONFIG",
                serde_json::to_string(&config.to_string())?,
            ),
            ("WASM_DIR", wasm_dir.display().to_string()),
        ],
    )
}

/// Replaces `<ecds_dir>/rate-limit.yaml` with `resource` atomically: written in full to a
/// temporary file in the same directory, then renamed over the old file. Envoy reacts to the
/// move only, so it never reads a half-written file, and the rename is its one reload.
pub fn deliver(ecds_dir: &Path, resource: &str) -> Result<PathBuf> {
    let target = ecds_dir.join(RESOURCE_FILE);
    let temporary = ecds_dir.join(format!(".{RESOURCE_FILE}.{}.tmp", std::process::id()));
    let written = File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(resource.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, &target));
    if let Err(err) = written {
        let _ = fs::remove_file(&temporary);
        return Err(err).with_context(|| format!("cannot deliver {}", target.display()));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(dir: &Path) -> EcdsEndpoints {
        EcdsEndpoints {
            listen_address: "127.0.0.1".to_owned(),
            http_port: 18080,
            admin: HostPort::loopback(19901),
            notes: HostPort::loopback(13002),
            wasm_dir: PathBuf::from("/filters"),
            ecds_dir: dir.to_owned(),
        }
    }

    #[test]
    fn the_bootstrap_watches_the_directory_and_names_the_resource() {
        let config = render_bootstrap(&endpoints(Path::new("/ecds"))).unwrap();
        assert!(!config.contains("${"), "{config}");
        assert!(config.contains(r#"path: "/ecds/rate-limit.yaml""#));
        assert!(config.contains(r#"watched_directory: { path: "/ecds" }"#));
        assert!(config.contains(&format!("- name: {RESOURCE_NAME}\n")));
        assert!(config.contains("port_value: 18080"));
        assert!(config.contains(r#"filename: "/filters/rate_limit.wasm""#));
    }

    #[test]
    fn a_resource_carries_the_config_as_one_string_and_the_version() {
        let resource =
            render_resource("v\"2", r#"{ "name": "a \"b\"" }"#, Path::new("/filters")).unwrap();
        assert!(resource.contains(r#"version_info: "v\"2""#), "{resource}");
        assert!(resource.contains(&format!("  name: {RESOURCE_NAME}\n")));
        assert!(
            resource.contains(r#"value: "{\"name\":\"a \\\"b\\\"\"}""#),
            "{resource}"
        );
        assert!(render_resource("1", "{", Path::new("/f")).is_err());
    }

    #[test]
    fn delivery_replaces_the_file_and_leaves_nothing_else() {
        let dir = std::env::temp_dir().join(format!("wasmgate-ecds-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        deliver(&dir, "first").unwrap();
        let path = deliver(&dir, "second").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RESOURCE_FILE]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
