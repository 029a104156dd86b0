//! The configurations the benchmark compares, each an Envoy config rendered from bench/envoy/,
//! and the filters' JSON configs they inline (the real envoy/filters/*.json, changed only where
//! the benchmark must differ, each change stated in the report).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use xtask::paths::{envoy_dir, root};
use xtask::render::substitute;

use crate::bench::probes;

/// Token bucket size and refill per second for both rate limiters: far above anything one core
/// can serve, so neither ever denies during the benchmark and both still do all their work.
pub const NEVER_DENYING_LIMIT: u64 = 1_000_000_000;

/// The rate-limit response headers of the benchmark: the set C's `local_ratelimit` sends too.
pub const BENCH_RATE_LIMIT_HEADERS: &str = "x_ratelimit";

/// How the benchmark's rate-limit writes them: added, as C's `local_ratelimit` adds its own.
pub const BENCH_RATE_LIMIT_APPEND_ACTION: &str = "append_if_exists_or_add";

/// The body nginx and the direct response answer with (an empty notes list).
pub const UPSTREAM_BODY: &str = "[]";

/// A path where nginx also sends an `X-RateLimit-Limit` of its own, this one: every
/// rate-limiting configuration must add its own after it (`measure::check_policy`).
pub const UPSTREAM_LIMITED_PATH: &str = "/api/upstream-limited";
pub const UPSTREAM_RATE_LIMIT: &str = "7";

/// The audience tokens are minted for (the authz-service's default).
pub const AUDIENCE: &str = "wasmgate-api";

/// One configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    template: &'static str,
    /// Whether a request without a token must be refused (401): checked before measuring, so a
    /// configuration that lets everything through can't pass for a fast one.
    pub requires_token: bool,
    /// bearer-auth's token cache (configuration E turns it off).
    bearer_cache: bool,
    /// jwt_authn's `jwt_cache_config` (C has it, C0 keeps jwt_authn's default: none).
    jwt_cache: bool,
    /// Whether a rate limiter writes X-RateLimit headers: checked before measuring to write
    /// them as C's `local_ratelimit` does.
    pub rate_limited: bool,
}

const fn scenario(id: &'static str, title: &'static str, template: &'static str) -> Scenario {
    Scenario {
        id,
        title,
        template,
        requires_token: false,
        bearer_cache: true,
        jwt_cache: true,
        rate_limited: false,
    }
}

/// A configuration of the whole gateway: tokens checked, requests rate-limited.
const fn gateway(mut s: Scenario) -> Scenario {
    s.rate_limited = true;
    with_token(s)
}

const fn with_token(mut s: Scenario) -> Scenario {
    s.requires_token = true;
    s
}

/// Every configuration, in report order. A, B and C are the references the ratios use.
pub const SCENARIOS: [Scenario; 12] = [
    scenario("A", "Envoy direct response (ceiling)", "A"),
    scenario("B", "passthrough (router only)", "B"),
    gateway(scenario(
        "C",
        "native jwt_authn (cache) + rbac scope + local_ratelimit + regex_rewrite",
        "C",
    )),
    gateway(Scenario {
        jwt_cache: false,
        ..scenario("C0", "as C, jwt_authn without cache (its default)", "C")
    }),
    gateway(scenario(
        "D",
        "ours: bearer-auth + rate-limit + route-rewrite",
        "D",
    )),
    gateway(scenario(
        "D1",
        "ours in one module: the three filters as stages of chain.wasm, one VM",
        "D1",
    )),
    gateway(Scenario {
        bearer_cache: false,
        ..scenario("E", "as D, bearer-auth token cache off", "D")
    }),
    with_token(scenario(
        "F-bearer-auth",
        "ours: bearer-auth alone",
        "F-bearer-auth",
    )),
    with_token(scenario(
        "F-jwt-authn",
        "native jwt_authn (cache) + rbac scope alone",
        "F-jwt-authn",
    )),
    Scenario {
        rate_limited: true,
        ..scenario("F-rate-limit", "ours: rate-limit alone", "F-rate-limit")
    },
    scenario(
        "F-route-rewrite",
        "ours: route-rewrite alone",
        "F-route-rewrite",
    ),
    scenario(
        "N",
        "the floor: one wasm filter that only sets the upstream header",
        "N",
    ),
];

/// A configuration of the full run, or a probe (run only when named).
pub fn find(id: &str) -> Option<Scenario> {
    let probe = || probes::find(id).map(|p| scenario(p.id, p.title, "P"));
    let probe_chain = || probes::find_chain(id).map(|c| scenario(c.id, c.title, "P3"));
    SCENARIOS
        .iter()
        .copied()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .or_else(probe)
        .or_else(probe_chain)
}

pub fn bench_dir() -> PathBuf {
    root().join("bench")
}

/// Where one run's processes listen and what the tokens say.
#[derive(Debug, Clone)]
pub struct Values {
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    pub authz_port: u16,
    /// `iss` of the tokens, the gateway's public URL (`${PUBLIC_URL}` in the filter configs).
    pub issuer: String,
    pub wasm_dir: PathBuf,
    /// Where the probes' modules are (`bench::probes::write_all`).
    pub probe_dir: PathBuf,
}

/// The wasm filters' JSON configs as the benchmark runs them.
#[derive(Debug, Clone)]
pub struct FilterConfigs {
    pub bearer_auth: Value,
    pub rate_limit: Value,
    pub route_rewrite: Value,
    /// Where each came from and what was changed, for the report.
    pub notes: Vec<String>,
}

impl FilterConfigs {
    /// The one-module chain's configuration: the three filters' as its sections, with
    /// `bearer_auth` for bearer-auth's (the scenario may have changed it).
    pub fn chain(&self, bearer_auth: &Value) -> Value {
        json!({
            "bearer_auth": bearer_auth,
            "rate_limit": self.rate_limit,
            "route_rewrite": self.route_rewrite,
        })
    }

    /// Reads envoy/filters/*.json (`${PUBLIC_URL}` = `issuer`) and makes the benchmark's changes.
    pub fn load(issuer: &str) -> Result<Self> {
        Self::load_from(&envoy_dir().join("filters"), &bench_dir(), issuer)
    }

    fn load_from(filters_dir: &Path, bench_dir: &Path, issuer: &str) -> Result<Self> {
        let vars = BTreeMap::from([("PUBLIC_URL".to_owned(), issuer.to_owned())]);
        let read = |path: &Path| -> Result<Value> {
            let raw = fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let text = substitute(&raw, &vars).with_context(|| format!("in {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))
        };
        let mut notes = Vec::new();
        let gateway_bearer = filters_dir.join("bearer-auth.json");
        let mut bearer_auth = read(&gateway_bearer)?;
        if bearer_auth.get("issuer").is_none() {
            // The gateway's file is still a placeholder: use the benchmark's own policy.
            let own = bench_dir.join("bearer-auth.json");
            bearer_auth = read(&own)?;
            notes.push(format!(
                "bearer-auth: {} has no policy yet, so bench/bearer-auth.json is used",
                gateway_bearer.display()
            ));
        } else {
            notes.push("bearer-auth: envoy/filters/bearer-auth.json as is".to_owned());
        }
        let mut rate_limit = read(&filters_dir.join("rate-limit.json"))?;
        let policies = rate_limit
            .get_mut("policies")
            .and_then(Value::as_array_mut)
            .context("envoy/filters/rate-limit.json has no `policies` list")?;
        for policy in policies.iter_mut() {
            if let Some(p) = policy.as_object_mut() {
                p.insert("limit".to_owned(), json!(NEVER_DENYING_LIMIT));
                p.insert("interval".to_owned(), json!("1s"));
            }
        }
        // C's local_ratelimit adds the three X-RateLimit headers (DRAFT_VERSION_03) after any
        // the upstream sent; the gateway sends those and the IETF pair, replacing the upstream's.
        // The same policy means the same headers, written the same way.
        rate_limit["headers"] = json!(BENCH_RATE_LIMIT_HEADERS);
        rate_limit["append_action"] = json!(BENCH_RATE_LIMIT_APPEND_ACTION);
        notes.push(format!(
            "rate-limit: envoy/filters/rate-limit.json with every policy's limit raised to \
             {NEVER_DENYING_LIMIT} per 1 s (never denies; same for local_ratelimit), \
             `headers: \"{BENCH_RATE_LIMIT_HEADERS}\"` and `append_action: \
             \"{BENCH_RATE_LIMIT_APPEND_ACTION}\"`: the X-RateLimit-* headers C's \
             local_ratelimit sends, added as it adds them"
        ));
        let mut route_rewrite = read(&filters_dir.join("route-rewrite.json"))?;
        // C's regex_rewrite keeps the client's :authority and keeps no trace of the old path;
        // the gateway's [P] sets the target's authority and adds x-wasmgate-original-path. The
        // same policy means neither.
        route_rewrite["preserve_host"] = json!(true);
        route_rewrite["send_original_path"] = json!(false);
        notes.push(
            "route-rewrite: envoy/filters/route-rewrite.json with `preserve_host: true` and \
             `send_original_path: false`, what C's regex_rewrite does (the client's :authority \
             kept, no x-wasmgate-original-path)"
                .to_owned(),
        );
        Ok(Self {
            bearer_auth,
            rate_limit,
            route_rewrite,
            notes,
        })
    }
}

/// A JSON config as the YAML double-quoted string Envoy's StringValue takes.
fn inline(value: &Value) -> Result<String> {
    Ok(serde_json::to_string(&value.to_string())?)
}

/// The Envoy config of `scenario`.
pub fn render(scenario: &Scenario, values: &Values, filters: &FilterConfigs) -> Result<String> {
    let template_path = bench_dir()
        .join("envoy")
        .join(format!("{}.yaml.tmpl", scenario.template));
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    let mut bearer = filters.bearer_auth.clone();
    if !scenario.bearer_cache
        && let Some(b) = bearer.as_object_mut()
    {
        b.insert("cache_max_entries".to_owned(), json!(0));
    }
    let jwt_cache = if scenario.jwt_cache {
        "jwt_cache_config: { jwt_cache_size: 1024 }"
    } else {
        "# jwt_authn's default: no token cache"
    };
    let mut vars: BTreeMap<String, String> = [
        ("LISTEN_PORT", values.listen_port.to_string()),
        ("ADMIN_PORT", values.admin_port.to_string()),
        ("UPSTREAM_PORT", values.upstream_port.to_string()),
        ("AUTHZ_PORT", values.authz_port.to_string()),
        ("ISSUER", values.issuer.clone()),
        ("AUDIENCE", AUDIENCE.to_owned()),
        ("WASM_DIR", values.wasm_dir.display().to_string()),
        ("UPSTREAM_BODY", UPSTREAM_BODY.to_owned()),
        ("RATE_LIMIT", NEVER_DENYING_LIMIT.to_string()),
        ("JWT_CACHE_CONFIG", jwt_cache.to_owned()),
        ("BEARER_AUTH_CONFIG", inline(&bearer)?),
        ("RATE_LIMIT_CONFIG", inline(&filters.rate_limit)?),
        ("ROUTE_REWRITE_CONFIG", inline(&filters.route_rewrite)?),
        ("CHAIN_CONFIG", inline(&filters.chain(&bearer))?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(probe) = probes::find(scenario.id) {
        let wasm = probes::wasm_file(&values.probe_dir, &probe);
        vars.insert("PROBE_WASM".to_owned(), wasm.display().to_string());
    }
    if let Some(chain) = probes::find_chain(scenario.id) {
        for (at, id) in chain.probes.iter().enumerate() {
            let probe = probes::find(id).with_context(|| format!("no probe `{id}`"))?;
            let wasm = probes::wasm_file(&values.probe_dir, &probe);
            vars.insert(format!("PROBE_WASM_{}", at + 1), wasm.display().to_string());
        }
    }
    substitute(&template, &vars).with_context(|| format!("in {}", template_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            listen_port: 10001,
            admin_port: 10002,
            upstream_port: 10003,
            authz_port: 10004,
            issuer: "http://127.0.0.1:10001".to_owned(),
            wasm_dir: PathBuf::from("/w"),
            probe_dir: PathBuf::from("/p"),
        }
    }

    #[test]
    fn every_scenario_renders_with_every_placeholder_filled() {
        let filters = FilterConfigs::load("http://127.0.0.1:10001").unwrap();
        for s in SCENARIOS {
            let yaml = render(&s, &values(), &filters).unwrap();
            assert!(!yaml.contains("${"), "{}: {yaml}", s.id);
            assert!(yaml.contains("port_value: 10001"), "{}", s.id);
        }
    }

    /// Envoy itself accepts every rendered configuration (`--mode validate` checks the schema of
    /// every field, the native filters' configs included, without starting listeners).
    #[test]
    fn envoy_validates_every_rendered_configuration() {
        let envoy = xtask::envoy::envoy_binary();
        let dir =
            std::env::temp_dir().join(format!("wasmgate-bench-validate-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let filters = FilterConfigs::load("http://127.0.0.1:10001").unwrap();
        // Envoy checks the .wasm files exist: the built filters (the test command builds them).
        let values = Values {
            wasm_dir: xtask::paths::wasm_dir(),
            probe_dir: dir.join("probes"),
            ..values()
        };
        probes::write_all(&values.probe_dir).unwrap();
        let probes = probes::ids().filter_map(find);
        for s in SCENARIOS.into_iter().chain(probes) {
            let path = dir.join(format!("{}.yaml", s.id));
            fs::write(&path, render(&s, &values, &filters).unwrap()).unwrap();
            let out = std::process::Command::new(&envoy)
                .args(["--mode", "validate", "--disable-hot-restart", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}: {log}", s.id);
            assert!(!log.contains("Deprecated"), "{}: {log}", s.id);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_real_filter_configs_are_used_with_a_never_denying_limit() {
        let filters = FilterConfigs::load("http://iss.example").unwrap();
        assert_eq!(
            filters.rate_limit["policies"][0]["limit"],
            json!(NEVER_DENYING_LIMIT)
        );
        assert_eq!(filters.rate_limit["policies"][0]["interval"], json!("1s"));
        assert_eq!(filters.rate_limit["headers"], json!("x_ratelimit"));
        assert_eq!(
            filters.rate_limit["append_action"],
            json!("append_if_exists_or_add")
        );
        // The rest of the policy (key, fallback) is the gateway's.
        assert_eq!(
            filters.rate_limit["policies"][0]["key"][0]["header"],
            json!("x-auth-client-id")
        );
        assert_eq!(filters.bearer_auth["issuer"], json!("http://iss.example"));
        assert!(filters.route_rewrite["rules"].is_array());
    }

    #[test]
    fn e_turns_the_token_cache_off_and_c0_jwt_authn_s_cache() {
        let filters = FilterConfigs::load("http://iss.example").unwrap();
        let d = render(&find("D").unwrap(), &values(), &filters).unwrap();
        let e = render(&find("E").unwrap(), &values(), &filters).unwrap();
        assert!(!d.contains(r#"\"cache_max_entries\":0"#));
        assert!(e.contains(r#"\"cache_max_entries\":0"#), "{e}");
        let c = render(&find("C").unwrap(), &values(), &filters).unwrap();
        let c0 = render(&find("C0").unwrap(), &values(), &filters).unwrap();
        assert!(c.contains("jwt_cache_config:"));
        assert!(!c0.contains("jwt_cache_config:"));
    }

    #[test]
    fn a_placeholder_bearer_config_falls_back_to_the_bench_policy() {
        let dir = std::env::temp_dir().join(format!("wasmgate-bench-cfg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("bearer-auth.json"), "{}").unwrap();
        for f in ["rate-limit.json", "route-rewrite.json"] {
            fs::copy(envoy_dir().join("filters").join(f), dir.join(f)).unwrap();
        }
        let filters = FilterConfigs::load_from(&dir, &bench_dir(), "http://x").unwrap();
        assert_eq!(filters.bearer_auth["issuer"], json!("http://x"));
        assert!(filters.notes[0].contains("bench/bearer-auth.json"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn scenarios_are_found_by_id() {
        assert_eq!(find("c0").unwrap().id, "C0");
        assert!(find("Z").is_none());
        assert!(find("D").unwrap().requires_token);
        assert!(!find("B").unwrap().requires_token);
    }
}
