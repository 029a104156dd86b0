//! Rendering `envoy/envoy.yaml.tmpl` into a runnable Envoy config.
//!
//! One template serves the local stack (fixed ports of DESIGN.md), the end-to-end tests (free
//! ports) and docker-compose (service names, container paths): only the values differ.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::paths::{FILTERS, envoy_dir};

/// A host and port something listens on or is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn loopback(port: u16) -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// Every value the template needs.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Address the gateway's listeners bind (loopback locally, all addresses in a container).
    pub listen_address: String,
    pub http_port: u16,
    pub https_port: u16,
    pub admin: HostPort,
    pub authz: HostPort,
    pub notes: HostPort,
    pub client: HostPort,
    /// The gateway's public base URL: the token issuer and the base of every link.
    pub public_url: String,
    pub cert_dir: PathBuf,
    pub wasm_dir: PathBuf,
}

impl Endpoints {
    /// The fixed local stack of DESIGN.md.
    pub fn local() -> Self {
        Self::loopback(8080, 8443, 9901, 3001, 3002, 3004)
    }

    /// All on loopback with the given ports (the tests pass free ones).
    pub fn loopback(
        http: u16,
        https: u16,
        admin: u16,
        authz: u16,
        notes: u16,
        client: u16,
    ) -> Self {
        Self {
            listen_address: "127.0.0.1".to_owned(),
            http_port: http,
            https_port: https,
            admin: HostPort::loopback(admin),
            authz: HostPort::loopback(authz),
            notes: HostPort::loopback(notes),
            client: HostPort::loopback(client),
            public_url: public_url(https),
            cert_dir: crate::paths::certs_dir(),
            wasm_dir: crate::paths::wasm_dir(),
        }
    }

    /// Inside docker-compose: service names, container paths, the published ports.
    pub fn compose() -> Self {
        let service = |host: &str, port| HostPort {
            host: host.to_owned(),
            port,
        };
        Self {
            listen_address: "0.0.0.0".to_owned(),
            http_port: 8080,
            https_port: 8443,
            admin: HostPort::loopback(9901),
            authz: service("authz", 3001),
            notes: service("notes-api", 3002),
            client: service("demo-client", 3004),
            public_url: public_url(8443),
            cert_dir: PathBuf::from("/etc/wasmgate/certs"),
            wasm_dir: PathBuf::from("/etc/wasmgate/filters"),
        }
    }

    /// The template's placeholders and their values (also used to check the docs' examples).
    pub fn variables(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("LISTEN_ADDRESS", self.listen_address.clone()),
            ("HTTP_PORT", self.http_port.to_string()),
            ("HTTPS_PORT", self.https_port.to_string()),
            ("ADMIN_ADDRESS", self.admin.host.clone()),
            ("ADMIN_PORT", self.admin.port.to_string()),
            ("AUTHZ_HOST", self.authz.host.clone()),
            ("AUTHZ_PORT", self.authz.port.to_string()),
            ("NOTES_HOST", self.notes.host.clone()),
            ("NOTES_PORT", self.notes.port.to_string()),
            ("CLIENT_HOST", self.client.host.clone()),
            ("CLIENT_PORT", self.client.port.to_string()),
            ("PUBLIC_URL", self.public_url.clone()),
            ("CERT_DIR", self.cert_dir.display().to_string()),
            ("WASM_DIR", self.wasm_dir.display().to_string()),
        ])
    }
}

fn public_url(https_port: u16) -> String {
    if https_port == 443 {
        "https://localhost".to_owned()
    } else {
        format!("https://localhost:{https_port}")
    }
}

/// The template variable that carries a filter's configuration, e.g. `BEARER_AUTH_CONFIG`.
fn filter_variable(package: &str) -> String {
    format!("{}_CONFIG", package.replace('-', "_").to_uppercase())
}

/// Renders the Envoy config. `filter_configs` replaces a filter's JSON (by package name, e.g.
/// `rate-limit`) instead of reading `envoy/filters/<package>.json`.
pub fn render(endpoints: &Endpoints, filter_configs: &BTreeMap<String, String>) -> Result<String> {
    let mut variables: BTreeMap<String, String> = endpoints
        .variables()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (package, _) in FILTERS {
        let raw = match filter_configs.get(package) {
            Some(json) => json.clone(),
            None => {
                let path = envoy_dir().join("filters").join(format!("{package}.json"));
                fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?
            }
        };
        let json = substitute(&raw, &variables)
            .with_context(|| format!("in the {package} filter config"))?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .with_context(|| format!("the {package} filter config is not valid JSON"))?;
        // A JSON string literal is also a valid YAML double-quoted scalar.
        let quoted = serde_json::to_string(&value.to_string())?;
        variables.insert(filter_variable(package), quoted);
    }
    let template_path = envoy_dir().join("envoy.yaml.tmpl");
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    substitute(&template, &variables).with_context(|| format!("in {}", template_path.display()))
}

/// Replaces every `${NAME}` in `text`; an unknown name is an error, never left in place.
pub fn substitute(text: &str, variables: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!(
                "unterminated placeholder `${{{}`",
                after.chars().take(20).collect::<String>()
            );
        };
        let name = &after[..end];
        let value = variables
            .get(name)
            .with_context(|| format!("unknown placeholder `${{{name}}}`"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_refuses_unknown_names() {
        let vars = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(substitute("x${A}y${A}", &vars).unwrap(), "x1y1");
        assert!(substitute("${B}", &vars).is_err());
        assert!(substitute("${A", &vars).is_err());
    }

    #[test]
    fn the_template_renders_with_every_placeholder_filled() {
        let config = render(&Endpoints::local(), &BTreeMap::new()).unwrap();
        assert!(!config.contains("${"));
        assert!(config.contains("port_value: 8443"));
        assert!(config.contains("bearer_auth.wasm"));
    }

    #[test]
    fn filter_configs_are_inlined_as_strings_with_the_public_url() {
        let overrides = BTreeMap::from([(
            "bearer-auth".to_owned(),
            r#"{"issuer": "${PUBLIC_URL}", "note": "a \"quoted\" word"}"#.to_owned(),
        )]);
        let config = render(&Endpoints::loopback(1, 2, 3, 4, 5, 6), &overrides).unwrap();
        assert!(
            config.contains(r#"value: "{\"issuer\":\"https://localhost:2\",\"note\":\"a \\\"quoted\\\" word\"}""#),
            "{config}"
        );
    }

    #[test]
    fn a_filter_config_that_is_not_json_names_the_filter() {
        let overrides = BTreeMap::from([("rate-limit".to_owned(), "{".to_owned())]);
        let err = render(&Endpoints::local(), &overrides).unwrap_err();
        assert!(format!("{err:#}").contains("rate-limit"));
    }
}
