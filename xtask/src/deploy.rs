//! The Kubernetes manifests under `deploy/`: an Istio `WasmPlugin` per filter (plus the
//! `EnvoyFilter` that gives route-rewrite's `[P]` rules a route to follow) and an Envoy Gateway
//! `EnvoyExtensionPolicy`, for an example mesh; and under `deploy/chain/` the same for the
//! one-module chain, the alternative to the three filters (never to be applied with them).
//!
//! They are rendered, never hand-edited, from the same `envoy/filters/<filter>.json` the local
//! stack loads (only the endpoints that differ in a mesh are replaced, each one named below and
//! checked to be there) and from the images `cargo xtask build` wrote, whose manifest digests they
//! pin. `cargo xtask render` writes them; a test renders them again and compares, so neither the
//! configs nor the digests can drift from what is committed.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::oci::{self, TAG};
use crate::paths::{CHAIN, FILTERS, deploy_dir, envoy_dir};

/// Where the example pushes the images (`skopeo copy oci:… docker://<this>/<filter>:<tag>`).
pub const REGISTRY: &str = "registry.example.com/wasmgate";
/// The example's public base URL (the token issuer), in place of the local `${PUBLIC_URL}`.
pub const PUBLIC_URL: &str = "https://wasmgate.example.com";
/// Namespace of the example's services (authz, notes-api).
pub const APP_NAMESPACE: &str = "wasmgate";

/// The endpoints of the example mesh that replace the local stack's in the filter configs.
#[derive(Debug, Clone)]
pub struct Mesh {
    /// The Envoy cluster of the authz-service (bearer-auth fetches the JWKS through it).
    pub authz_cluster: String,
    /// `:authority` of that fetch.
    pub authz_authority: String,
    /// The notes API's `host:port` in route-rewrite's `[P]` targets (locally `localhost:3002`).
    pub notes_authority: String,
    /// The Envoy cluster those targets are sent to (locally `notes_api`).
    pub notes_cluster: String,
}

impl Mesh {
    /// Istio names the cluster of a service port `outbound|<port>|<subset>|<host>`; every
    /// sidecar and gateway has one per service it can reach (unless a `Sidecar` resource hides
    /// it), so a filter's HTTP callout can use it like any route does.
    pub fn istio() -> Self {
        let host = |service: &str| format!("{service}.{APP_NAMESPACE}.svc.cluster.local");
        Self {
            authz_cluster: format!("outbound|3001||{}", host("authz")),
            authz_authority: host("authz"),
            notes_authority: format!("{}:3002", host("notes-api")),
            notes_cluster: format!("outbound|3002||{}", host("notes-api")),
        }
    }

    /// Envoy Gateway makes one cluster per route rule, `httproute/<namespace>/<name>/rule/<n>`,
    /// and none for a Service no route uses: the example's HTTPRoutes `authz` (which also serves
    /// `/oauth2/` and `/.well-known/` to clients) and `notes-api` provide them.
    pub fn envoy_gateway() -> Self {
        Self {
            authz_cluster: format!("httproute/{APP_NAMESPACE}/authz/rule/0"),
            authz_authority: format!("authz.{APP_NAMESPACE}.svc.cluster.local"),
            notes_authority: format!("notes-api.{APP_NAMESPACE}.svc.cluster.local:3002"),
            notes_cluster: format!("httproute/{APP_NAMESPACE}/notes-api/rule/0"),
        }
    }
}

/// The local stack's values that [`Mesh`] replaces.
const LOCAL_AUTHZ_CLUSTER: &str = "authz";
const LOCAL_NOTES_AUTHORITY: &str = "localhost:3002";
const LOCAL_NOTES_CLUSTER: &str = "notes_api";

/// `envoy/filters/<package>.json` with `${PUBLIC_URL}` filled and the local endpoints replaced
/// by `mesh`'s. Fails if a value to replace is not where it is expected, so a change to the
/// local config cannot silently leave a local endpoint in the manifests.
pub fn filter_config(package: &str, mesh: &Mesh) -> Result<Value> {
    let path = envoy_dir().join("filters").join(format!("{package}.json"));
    let raw =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let variables = BTreeMap::from([("PUBLIC_URL".to_owned(), PUBLIC_URL.to_owned())]);
    let text = crate::render::substitute(&raw, &variables)
        .with_context(|| format!("in {}", path.display()))?;
    let mut config: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    match package {
        "bearer-auth" => {
            replace(
                &mut config,
                "/jwks/remote/cluster",
                LOCAL_AUTHZ_CLUSTER,
                &mesh.authz_cluster,
            )?;
            replace(
                &mut config,
                "/jwks/remote/authority",
                LOCAL_AUTHZ_CLUSTER,
                &mesh.authz_authority,
            )?;
        }
        "route-rewrite" => {
            let target = format!("://{LOCAL_NOTES_AUTHORITY}/");
            let rules = config
                .pointer_mut("/rules")
                .context("route-rewrite: no `rules`")?;
            let renamed =
                rename_in_strings(rules, &target, &format!("://{}/", mesh.notes_authority));
            if renamed == 0 {
                bail!("route-rewrite: no rule targets {LOCAL_NOTES_AUTHORITY}");
            }
            let upstreams = config
                .pointer_mut("/upstreams")
                .and_then(Value::as_object_mut)
                .context("route-rewrite: no `upstreams` object")?;
            match upstreams.remove(LOCAL_NOTES_AUTHORITY) {
                Some(Value::String(cluster)) if cluster == LOCAL_NOTES_CLUSTER => {}
                other => bail!(
                    "route-rewrite: upstreams[{LOCAL_NOTES_AUTHORITY}] is {other:?}, expected {LOCAL_NOTES_CLUSTER:?}"
                ),
            }
            upstreams.insert(
                mesh.notes_authority.clone(),
                Value::String(mesh.notes_cluster.clone()),
            );
        }
        _ => {}
    }
    Ok(config)
}

/// The chain's configuration for `mesh`: one section per filter, each exactly what
/// [`filter_config`] makes for that filter (docs/filters/chain.md).
pub fn chain_config(mesh: &Mesh) -> Result<Value> {
    let mut sections = serde_json::Map::new();
    for (package, stem) in FILTERS {
        sections.insert(stem.to_owned(), filter_config(package, mesh)?);
    }
    Ok(Value::Object(sections))
}

fn replace(config: &mut Value, pointer: &str, expected: &str, new: &str) -> Result<()> {
    match config.pointer_mut(pointer) {
        Some(value) if value == expected => {
            *value = Value::String(new.to_owned());
            Ok(())
        }
        other => bail!("{pointer} is {other:?}, expected {expected:?}"),
    }
}

/// Replaces `from` by `to` in every string under `value`; returns how many strings changed.
fn rename_in_strings(value: &mut Value, from: &str, to: &str) -> usize {
    match value {
        Value::String(s) if s.contains(from) => {
            *s = s.replace(from, to);
            1
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|v| rename_in_strings(v, from, to))
            .sum(),
        Value::Object(map) => map
            .values_mut()
            .map(|v| rename_in_strings(v, from, to))
            .sum(),
        _ => 0,
    }
}

/// What a proxy does with requests when the filter cannot run (failed to load, or trapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Close,
    Open,
}

impl Failure {
    fn istio(self) -> &'static str {
        match self {
            Self::Close => "FAIL_CLOSE",
            Self::Open => "FAIL_OPEN",
        }
    }
}

/// The failure behaviour of each filter and why, as a comment for the manifests.
pub fn failure(package: &str, config: &Value) -> Result<(Failure, String)> {
    Ok(match package {
        "bearer-auth" => (
            Failure::Close,
            "Fail closed: an authentication filter that fails open lets every request in \
             unauthenticated (and unauthenticated requests could then set x-auth-* headers \
             that no filter removed)."
                .to_owned(),
        ),
        "rate-limit" => {
            // The filter's own `failure_mode` already says what the operator wants when a
            // bucket cannot be updated; a plugin that cannot run at all is the same choice.
            let mode = config["failure_mode"].as_str().unwrap_or("deny");
            match mode {
                "deny" => (
                    Failure::Close,
                    "Fail closed, following the filter's own `failure_mode: deny`: a limiter \
                     that silently stops limiting removes the protection it exists for. (It runs \
                     after bearer-auth, so failing open would not let unauthenticated requests \
                     in; `failure_mode: allow` would render FAIL_OPEN here.)"
                        .to_owned(),
                ),
                "allow" => (
                    Failure::Open,
                    "Fail open, following the filter's own `failure_mode: allow`: availability \
                     over limiting."
                        .to_owned(),
                ),
                other => bail!("rate-limit: unknown failure_mode {other:?}"),
            }
        }
        "route-rewrite" => (
            Failure::Close,
            "Fail closed: its [F]/[G]/[R] rules can be access rules, and without its [P] \
             rules requests would reach routes they were meant to be rewritten away from."
                .to_owned(),
        ),
        "chain" => (
            Failure::Close,
            "Fail closed: the chain holds bearer-auth, and an authentication filter that fails \
             open lets every request in unauthenticated."
                .to_owned(),
        ),
        other => bail!("no failure policy for {other}"),
    })
}

/// Where each filter goes in Istio's filter chain. Istio inserts AUTHN plugins before its own
/// authentication filters, AUTHZ after those and before its authorization filters, STATS after
/// authorization and before its stats filters; within one phase, higher `priority` runs first.
/// Distinct phases give our order (bearer-auth, rate-limit, route-rewrite, router) whatever
/// other plugins exist; route-rewrite in STATS also lets Istio's AuthorizationPolicy see the
/// path the client sent, not the rewritten one.
fn istio_phase(package: &str) -> Result<(&'static str, &'static str)> {
    Ok(match package {
        "bearer-auth" => (
            "AUTHN",
            "First: sets x-auth-* (after removing any the client sent) for everything after it.",
        ),
        "rate-limit" => ("AUTHZ", "After bearer-auth: keys on x-auth-client-id."),
        "route-rewrite" => (
            "STATS",
            "Last before the router: rewrites the path and picks the upstream.",
        ),
        "chain" => (
            "AUTHN",
            "bearer-auth is its first stage, so the whole chain runs where bearer-auth alone \
             would: before Istio's authentication and authorization filters. Unlike the three \
             modules, route-rewrite therefore runs before an AuthorizationPolicy, which sees the \
             rewritten path.",
        ),
        other => bail!("no Istio phase for {other}"),
    })
}

/// One rendered file, `path` relative to `deploy/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub path: PathBuf,
    pub text: String,
}

/// The manifest digest of each filter's image and the chain's, read from the layouts the build
/// wrote.
pub fn digests_from_layouts() -> Result<BTreeMap<String, String>> {
    FILTERS
        .iter()
        .chain([&CHAIN])
        .map(|(package, _)| {
            let dir = oci::layout_dir(package);
            let digest = oci::manifest_digest(&dir).with_context(|| {
                format!("no image of {package}: run `cargo xtask build` (or `package`) first")
            })?;
            Ok(((*package).to_owned(), digest))
        })
        .collect()
}

/// The directories under `deploy/` whose YAML files are all rendered.
pub const RENDERED_DIRS: [&str; 3] = ["istio", "envoy-gateway", "chain"];

/// Every file under [`RENDERED_DIRS`], given the manifest digest of each filter's image and the
/// chain's (hex, by package).
pub fn render_all(digests: &BTreeMap<String, String>) -> Result<Vec<Rendered>> {
    let digest = |package: &str| {
        digests
            .get(package)
            .with_context(|| format!("no image digest for {package}"))
    };
    let mut files = Vec::new();
    let istio = Mesh::istio();
    for (package, _) in FILTERS {
        let config = filter_config(package, &istio)?;
        files.push(Rendered {
            path: PathBuf::from("istio").join(format!("{package}.yaml")),
            text: istio_wasm_plugin(package, digest(package)?, &config)?,
        });
    }
    files.push(Rendered {
        path: PathBuf::from("istio").join("route-rewrite-upstream.yaml"),
        text: istio_upstream_envoy_filter(),
    });
    let gateway = Mesh::envoy_gateway();
    let mut entries = Vec::new();
    for (package, _) in FILTERS {
        let config = filter_config(package, &gateway)?;
        entries.push(gateway_wasm_entry(package, digest(package)?, &config)?);
    }
    files.push(Rendered {
        path: PathBuf::from("envoy-gateway").join("envoy-extension-policy.yaml"),
        text: gateway_policy("wasmgate", &gateway_three_filters_note(), &entries),
    });
    let chain = CHAIN.0;
    files.push(Rendered {
        path: PathBuf::from("chain").join("istio-wasm-plugin.yaml"),
        text: istio_wasm_plugin(chain, digest(chain)?, &chain_config(&istio)?)?,
    });
    let entry = gateway_wasm_entry(chain, digest(chain)?, &chain_config(&gateway)?)?;
    files.push(Rendered {
        path: PathBuf::from("chain").join("envoy-extension-policy.yaml"),
        text: gateway_policy("wasmgate-chain", &gateway_chain_note(), &[entry]),
    });
    Ok(files)
}

/// Writes the rendered files; returns the paths that changed. YAML files in [`RENDERED_DIRS`]
/// that are no longer rendered are removed.
pub fn write_rendered(files: &[Rendered]) -> Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for file in files {
        let path = deploy_dir().join(&file.path);
        if fs::read_to_string(&path).is_ok_and(|old| old == file.text) {
            continue;
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&path, &file.text).with_context(|| format!("cannot write {}", path.display()))?;
        changed.push(path);
    }
    for dir in RENDERED_DIRS {
        for entry in fs::read_dir(deploy_dir().join(dir))? {
            let path = entry?.path();
            let rendered = files.iter().any(|f| deploy_dir().join(&f.path) == path);
            if path.extension().is_some_and(|e| e == "yaml") && !rendered {
                fs::remove_file(&path)?;
                changed.push(path);
            }
        }
    }
    Ok(changed)
}

fn header(sources: &str) -> String {
    format!(
        "# GENERATED by `cargo xtask render` from {sources}.\n\
         # Do not edit: change the sources and run the command again (a test checks this file is fresh).\n"
    )
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML): no value can be misread as a
/// number or a boolean.
fn q(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `value` as block YAML indented by `indent` spaces, keys sorted (so the output does not depend
/// on serde_json's map order).
fn yaml_block(value: &Value, indent: usize) -> Result<String> {
    let text = serde_yaml::to_string(&crate::oci::with_sorted_keys(value.clone()))?;
    let pad = " ".repeat(indent);
    Ok(text.lines().map(|line| format!("{pad}{line}\n")).collect())
}

/// Wraps `text` as `#` comment lines of at most ~96 columns, indented by `indent`.
fn comment(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && pad.len() + 2 + line.len() + 1 + word.len() > 96 {
            out.push_str(&format!("{pad}# {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{pad}# {line}\n"));
    }
    out
}

/// Where a manifest's plugin configuration comes from, for its comments.
fn sources(package: &str) -> String {
    if package == CHAIN.0 {
        "envoy/filters/*.json".to_owned()
    } else {
        format!("envoy/filters/{package}.json")
    }
}

/// The comment above a plugin configuration; `place` is "mesh" or "cluster".
fn config_note(package: &str, place: &str) -> String {
    if package == CHAIN.0 {
        format!(
            "One section per filter, each the same JSON as envoy/filters/<filter>.json, \
             endpoints as in this {place}."
        )
    } else {
        format!("The same JSON as envoy/filters/{package}.json, endpoints as in this {place}.")
    }
}

/// Where the `root_id` a manifest names is used in an Envoy config of ours.
fn root_id_source(package: &str) -> &'static str {
    if package == CHAIN.0 {
        "docs/filters/chain.md"
    } else {
        "envoy/envoy.yaml.tmpl"
    }
}

/// Why the chain's manifests must replace the three filters' and not join them.
const CHAIN_INSTEAD: &str = "bearer-auth, rate-limit and route-rewrite as the stages of one \
    module (docs/filters/chain.md), cheaper per request than the three. Apply it instead of the \
    three filters' manifests, never together with them: every request would pass each filter \
    twice.";

fn istio_wasm_plugin(package: &str, digest: &str, config: &Value) -> Result<String> {
    let (phase, why_phase) = istio_phase(package)?;
    let (failure, why_failure) = failure(package, config)?;
    let mut out = header(&format!(
        "{} and the image `cargo xtask build` made",
        sources(package)
    ));
    let what = if package == CHAIN.0 {
        format!(
            "Istio WasmPlugin for the wasmgate chain on the ingress gateway: {CHAIN_INSTEAD} \
             deploy/istio/route-rewrite-upstream.yaml is still needed for the [P] rules."
        )
    } else {
        format!("Istio WasmPlugin for the wasmgate {package} filter on the ingress gateway.")
    };
    out.push_str(&comment(
        &format!(
            "{what} Push the image first (docs/loading.md, \"OCI images\"), then replace \
             {REGISTRY} with your registry: the sha256 stays the same."
        ),
        0,
    ));
    out.push_str(&format!(
        "apiVersion: extensions.istio.io/v1alpha1\n\
         kind: WasmPlugin\n\
         metadata:\n\
         \x20 name: {name}\n\
         \x20 namespace: istio-system\n\
         spec:\n\
         \x20 selector:\n\
         \x20   matchLabels:\n\
         \x20     istio: ingressgateway\n\
         \x20 url: {url}\n\
         {sha_comment}\
         \x20 sha256: {digest}\n\
         \x20 imagePullPolicy: IfNotPresent\n\
         \x20 # The root_id the filter is registered under, as in {root_id_source}.\n\
         \x20 pluginName: {plugin}\n\
         {phase_comment}\
         \x20 phase: {phase}\n\
         {failure_comment}\
         \x20 failStrategy: {fail}\n\
         {config_comment}\
         \x20 pluginConfig:\n",
        name = q(&format!("wasmgate-{package}")),
        url = q(&format!("oci://{REGISTRY}/{package}:{TAG}")),
        sha_comment = comment(
            "The digest of the image manifest, which is what Istio checks after pulling (not the \
             sha256 of plugin.wasm).",
            2
        ),
        digest = q(digest),
        plugin = q(package),
        failure_comment = comment(&why_failure, 2),
        fail = failure.istio(),
        config_comment = comment(&config_note(package, "mesh"), 2),
        root_id_source = root_id_source(package),
        phase_comment = comment(why_phase, 2),
    ));
    out.push_str(&yaml_block(config, 4)?);
    Ok(out)
}

/// route-rewrite's `[P]` rules name the upstream cluster in `x-wasmgate-upstream`; Istio's
/// routes (from VirtualServices) cannot follow a header, so this inserts the one route that
/// does, first in the gateway's virtual host, like `envoy/envoy.yaml.tmpl` has it.
fn istio_upstream_envoy_filter() -> String {
    let mut out = header("xtask/src/deploy.rs");
    out.push_str(&comment(
        "For route-rewrite's [P] rules: a first route in the ingress gateway's virtual host for \
         wasmgate.example.com that forwards to the cluster named in x-wasmgate-upstream (the \
         filter removes that header from client requests, so only a rule sets it). Without it, \
         Istio's own routes still apply to the rewritten path and the header is ignored.",
        0,
    ));
    out.push_str(
        "apiVersion: networking.istio.io/v1alpha3\n\
         kind: EnvoyFilter\n\
         metadata:\n\
         \x20 name: \"wasmgate-upstream-header\"\n\
         \x20 namespace: istio-system\n\
         spec:\n\
         \x20 workloadSelector:\n\
         \x20   labels:\n\
         \x20     istio: ingressgateway\n\
         \x20 configPatches:\n\
         \x20 - applyTo: HTTP_ROUTE\n\
         \x20   match:\n\
         \x20     context: GATEWAY\n\
         \x20     routeConfiguration:\n\
         \x20       vhost:\n\
         \x20         name: \"wasmgate.example.com:443\"\n\
         \x20   patch:\n\
         \x20     operation: INSERT_FIRST\n\
         \x20     value:\n\
         \x20       name: \"wasmgate-upstream\"\n\
         \x20       match:\n\
         \x20         prefix: \"/\"\n\
         \x20         headers:\n\
         \x20         - name: \"x-wasmgate-upstream\"\n\
         \x20           present_match: true\n\
         \x20       route:\n\
         \x20         cluster_header: \"x-wasmgate-upstream\"\n",
    );
    out
}

fn gateway_wasm_entry(package: &str, digest: &str, config: &Value) -> Result<String> {
    let (failure, why_failure) = failure(package, config)?;
    let mut out = format!(
        "  - name: {name}\n\
         \x20   # The root_id the filter is registered under, as in {root_id_source}.\n\
         \x20   rootID: {name}\n\
         \x20   code:\n\
         \x20     type: Image\n\
         \x20     image:\n\
         \x20       url: {url}\n\
         \x20       # The image manifest's digest, which Envoy Gateway checks after pulling.\n\
         \x20       sha256: {digest}\n\
         {failure_comment}\
         \x20   failOpen: {open}\n\
         {config_comment}\
         \x20   config:\n",
        name = q(package),
        url = q(&format!("{REGISTRY}/{package}:{TAG}")),
        digest = q(digest),
        failure_comment = comment(&why_failure, 4),
        open = failure == Failure::Open,
        config_comment = comment(&config_note(package, "cluster"), 4),
        root_id_source = root_id_source(package),
    );
    out.push_str(&yaml_block(config, 6)?);
    Ok(out)
}

/// The comment that opens the three filters' `EnvoyExtensionPolicy`.
fn gateway_three_filters_note() -> String {
    format!(
        "Envoy Gateway: the three wasmgate filters on the Gateway `wasmgate`, in the order they \
         must run (the list order is the filter chain order). Push the images first \
         (docs/loading.md, \"OCI images\") and replace {REGISTRY} with your registry: the \
         sha256 stays the same. {GATEWAY_CLUSTERS}"
    )
}

/// The comment that opens the chain's `EnvoyExtensionPolicy`.
fn gateway_chain_note() -> String {
    format!(
        "Envoy Gateway: the wasmgate chain on the Gateway `wasmgate`: {CHAIN_INSTEAD} Push the \
         image first (docs/loading.md, \"OCI images\") and replace {REGISTRY} with your \
         registry: the sha256 stays the same. {GATEWAY_CLUSTERS}"
    )
}

const GATEWAY_CLUSTERS: &str = "bearer-auth fetches the JWKS through the cluster of rule 0 of \
    the HTTPRoute `authz`, and route-rewrite's [P] targets map to the cluster of rule 0 of the \
    HTTPRoute `notes-api` (Envoy Gateway names clusters httproute/<namespace>/<name>/rule/<index>).";

fn gateway_policy(name: &str, note: &str, entries: &[String]) -> String {
    let mut out = header("envoy/filters/*.json and the images `cargo xtask build` made");
    out.push_str(&comment(note, 0));
    out.push_str(&format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\n\
         kind: EnvoyExtensionPolicy\n\
         metadata:\n\
         \x20 name: {name}\n\
         \x20 namespace: {APP_NAMESPACE}\n\
         spec:\n\
         \x20 targetRefs:\n\
         \x20 - group: gateway.networking.k8s.io\n\
         \x20   kind: Gateway\n\
         \x20   name: \"wasmgate\"\n\
         \x20 wasm:\n",
        name = q(name),
    ));
    for entry in entries {
        out.push_str(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_configs_keep_the_local_config_but_its_endpoints() {
        let local: Value = serde_json::from_str(
            &fs::read_to_string(envoy_dir().join("filters/rate-limit.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(filter_config("rate-limit", &Mesh::istio()).unwrap(), local);

        let bearer = filter_config("bearer-auth", &Mesh::istio()).unwrap();
        assert_eq!(bearer["issuer"], PUBLIC_URL);
        assert_eq!(
            bearer["jwks"]["remote"]["cluster"],
            "outbound|3001||authz.wasmgate.svc.cluster.local"
        );
        let rewrite = filter_config("route-rewrite", &Mesh::envoy_gateway()).unwrap();
        let text = rewrite.to_string();
        assert!(!text.contains("localhost"), "{text}");
        assert_eq!(rewrite["upstreams"].as_object().unwrap().len(), 1, "{text}");
        assert_eq!(
            rewrite["upstreams"]["notes-api.wasmgate.svc.cluster.local:3002"],
            "httproute/wasmgate/notes-api/rule/0"
        );
    }

    #[test]
    fn rate_limit_failure_follows_its_failure_mode() {
        let deny = serde_json::json!({"failure_mode": "deny"});
        let allow = serde_json::json!({"failure_mode": "allow"});
        assert_eq!(failure("rate-limit", &deny).unwrap().0, Failure::Close);
        assert_eq!(failure("rate-limit", &allow).unwrap().0, Failure::Open);
        assert_eq!(
            failure("rate-limit", &serde_json::json!({})).unwrap().0,
            Failure::Close
        );
        assert!(failure("rate-limit", &serde_json::json!({"failure_mode": "x"})).is_err());
    }

    #[test]
    fn a_missing_endpoint_is_an_error_not_a_silent_leftover() {
        let mut config = serde_json::json!({"jwks": {"remote": {"cluster": "other"}}});
        assert!(replace(&mut config, "/jwks/remote/cluster", "authz", "x").is_err());
    }

    #[test]
    fn comments_wrap() {
        let text = comment(&"word ".repeat(60), 2);
        assert!(text.lines().all(|l| l.starts_with("  # ") && l.len() <= 96));
    }
}
