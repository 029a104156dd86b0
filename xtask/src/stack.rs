//! The whole stack — demo notes API, demo client, authz-service, Envoy with the three filters —
//! started from the rendered config, waited on until healthy, and stopped with nothing left behind.
//! `cargo xtask up` runs it on the fixed ports of DESIGN.md; the end-to-end tests on free ports.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::certs::{self, CertPaths};
use crate::envoy::envoy_binary;
use crate::paths::{CHAIN, FILTERS, bin_dir, certs_dir, run_dir};
use crate::process::{Echo, ManagedProcess};
use crate::render::{Endpoints, HostPort, render};

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The ports; `None` picks free loopback ports.
    pub endpoints: Option<Endpoints>,
    /// Envoy's worker threads (`--concurrency`); Envoy's default (one per core) when `None`.
    pub envoy_concurrency: Option<u32>,
    /// Filter configs to use instead of `envoy/filters/<package>.json`, by package name.
    pub filter_configs: BTreeMap<String, String>,
    /// Extra arguments for the authz-service.
    pub authz_args: Vec<String>,
    pub echo: Echo,
    /// Name of the run directory under `.run/` holding the rendered config, data and logs.
    pub run_name: String,
    /// Keep the authz-service's data (database, keys, registered clients) from the last run
    /// instead of starting from an empty run directory.
    pub keep_data: bool,
    /// Load the three filters as the stages of `chain.wasm`, one wasm filter, instead of three
    /// (`crate::one_module`).
    pub one_module: bool,
}

impl StackOptions {
    /// The local stack of DESIGN.md with logs on the console (`cargo xtask up`).
    pub fn local() -> Self {
        Self {
            endpoints: Some(Endpoints::local()),
            envoy_concurrency: None,
            filter_configs: BTreeMap::new(),
            authz_args: Vec::new(),
            echo: Echo::Console,
            run_name: "up".to_owned(),
            keep_data: true,
            one_module: false,
        }
    }

    /// A stack on free ports with logs in files, its run directory unique to this test.
    pub fn for_test(test_name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            endpoints: None,
            envoy_concurrency: Some(1),
            filter_configs: BTreeMap::new(),
            authz_args: Vec::new(),
            echo: Echo::Quiet,
            run_name: format!("test-{test_name}-{}-{n}", std::process::id()),
            keep_data: false,
            one_module: false,
        }
    }

    /// The three filters as the stages of the one-module chain.
    pub fn one_module(mut self) -> Self {
        self.one_module = true;
        self
    }

    pub fn concurrency(mut self, workers: u32) -> Self {
        self.envoy_concurrency = Some(workers);
        self
    }

    /// Uses `json` as the config of `package` (e.g. `"rate-limit"`); `${PUBLIC_URL}` is filled in.
    pub fn filter_config(mut self, package: &str, json: impl Into<String>) -> Self {
        self.filter_configs.insert(package.to_owned(), json.into());
        self
    }
}

/// A running stack. Dropping it stops every process it started.
pub struct Stack {
    pub endpoints: Endpoints,
    pub certs: CertPaths,
    pub run_dir: PathBuf,
    // Stopped in reverse order of start: Envoy first, then the services behind it.
    processes: Vec<ManagedProcess>,
}

const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const ENVOY_READY_TIMEOUT: Duration = Duration::from_secs(90);

impl Stack {
    pub async fn start(options: StackOptions) -> Result<Self> {
        let (certs, _) = certs::ensure(&certs_dir())?;
        let endpoints = match options.endpoints.clone() {
            Some(endpoints) => endpoints,
            None => free_endpoints()?,
        };
        let run_dir = run_dir().join(&options.run_name);
        if !options.keep_data {
            let _ = fs::remove_dir_all(&run_dir);
        }
        fs::create_dir_all(&run_dir)?;
        check_artifacts(&endpoints, options.one_module)?;

        let mut stack = Self {
            endpoints,
            certs,
            run_dir,
            processes: Vec::new(),
        };
        let mut config = render(&stack.endpoints, &options.filter_configs)?;
        if options.one_module {
            config = crate::one_module::with_chain(&config)?;
        }
        let config_path = stack.run_dir.join("envoy.yaml");
        fs::write(&config_path, config)?;

        let e = stack.endpoints.clone();
        let demo = bin_dir().join("wasmgate-demo");
        let mut notes = Command::new(&demo);
        notes.args(["notes", "--listen", &listen(&e.notes)]);
        stack.spawn("notes-api", notes, options.echo)?;

        let mut client = Command::new(&demo);
        client.args([
            "client",
            "--listen",
            &listen(&e.client),
            "--public-url",
            &e.public_url,
        ]);
        // It exchanges codes at the gateway's token endpoint, over TLS with the dev CA.
        client.env("DEMO_CA_CERT", &stack.certs.ca_cert);
        stack.spawn("demo-client", client, options.echo)?;

        let mut authz = Command::new(bin_dir().join("authz-service"));
        authz
            .args([
                "--listen",
                &listen(&e.authz),
                "--issuer",
                &e.public_url,
                "--data-dir",
            ])
            .arg(stack.run_dir.join("authz-data"))
            .arg("--demo")
            // Only Envoy reaches it (loopback), and Envoy sets X-Forwarded-For from the peer
            // address, so the client IP it carries is the one to throttle failed logins by.
            .arg("--trust-forwarded-for")
            .args(&options.authz_args);
        stack.spawn("authz", authz, options.echo)?;

        for (name, target) in [
            ("notes-api", &e.notes),
            ("demo-client", &e.client),
            ("authz", &e.authz),
        ] {
            stack
                .wait_healthy(name, &format!("{}/healthz", target.url()), HEALTH_TIMEOUT)
                .await?;
        }

        let mut envoy = Command::new(envoy_binary());
        envoy
            .arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--log-level", "info"])
            // Access log lines reach the log file within a quarter second, not Envoy's default 10 s.
            .args(["--file-flush-interval-msec", "250"]);
        if let Some(workers) = options.envoy_concurrency {
            envoy.args(["--concurrency", &workers.to_string()]);
        }
        stack.spawn("envoy", envoy, options.echo)?;
        stack
            .wait_healthy("envoy", &stack.admin_url("/ready"), ENVOY_READY_TIMEOUT)
            .await?;
        Ok(stack)
    }

    fn spawn(&mut self, name: &str, command: Command, echo: Echo) -> Result<()> {
        let log = self.run_dir.join(format!("{name}.log"));
        self.processes
            .push(ManagedProcess::spawn(name, command, &log, echo)?);
        Ok(())
    }

    /// Polls `url` until it answers 200; fails early with the log if the process exits.
    async fn wait_healthy(&mut self, name: &str, url: &str, timeout: Duration) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(response) = client.get(url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if let Some(process) = self.processes.iter_mut().find(|p| p.name() == name)
                && let Some(status) = process.exited()
            {
                bail!(
                    "{name} exited ({status}) before it was healthy; its log:\n{}",
                    tail(&process.log())
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} not healthy at {url} after {timeout:?}; its log:\n{}",
                    tail(&self.log(name))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `https://localhost:<https port><path>`.
    pub fn https_url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoints.public_url)
    }

    /// `http://localhost:<http port><path>`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.endpoints.http_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoints.admin.url())
    }

    /// An HTTPS client that trusts the dev CA and nothing else, and does not follow redirects.
    pub fn https_client(&self) -> Result<reqwest::Client> {
        https_client_trusting(&self.certs.ca_cert)
    }

    /// Process ids of everything this stack started.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(ManagedProcess::pid).collect()
    }

    /// The log of one process (`envoy`, `authz`, `notes-api`, `demo-client`).
    pub fn log(&self, name: &str) -> String {
        self.processes
            .iter()
            .find(|p| p.name() == name)
            .map(ManagedProcess::log)
            .unwrap_or_default()
    }

    /// Stops everything, Envoy first.
    pub fn stop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.stop(Duration::from_secs(5));
        }
    }

    /// Which process, if any, has exited on its own since the stack started (a crash).
    pub fn crashed(&mut self) -> Option<String> {
        self.processes.iter_mut().find_map(|p| {
            p.exited()
                .map(|status| format!("{} exited: {status}", p.name()))
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTPS client whose only trust anchor is the CA certificate at `ca_cert`.
pub fn https_client_trusting(ca_cert: &Path) -> Result<reqwest::Client> {
    let pem = fs::read(ca_cert).with_context(|| format!("cannot read {}", ca_cert.display()))?;
    Ok(reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?)
}

fn listen(target: &HostPort) -> String {
    format!("{}:{}", target.host, target.port)
}

/// The last lines of a log, enough to see why something failed.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Free loopback ports for every listener of a test stack.
fn free_endpoints() -> Result<Endpoints> {
    // Hold all listeners until every port is known, so no two are the same.
    let listeners = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(listeners);
    match ports[..] {
        [http, https, admin, authz, notes, client] => Ok(Endpoints::loopback(
            http, https, admin, authz, notes, client,
        )),
        _ => bail!("could not pick free ports"),
    }
}

/// Fails with the command that fixes it when a binary or filter has not been built.
fn check_artifacts(endpoints: &Endpoints, one_module: bool) -> Result<()> {
    let modules = if one_module {
        &[CHAIN][..]
    } else {
        &FILTERS[..]
    };
    let mut missing: Vec<PathBuf> = modules
        .iter()
        .map(|(_, stem)| endpoints.wasm_dir.join(format!("{stem}.wasm")))
        .chain(["authz-service", "wasmgate-demo"].map(|b| bin_dir().join(b)))
        .filter(|p| !p.exists())
        .collect();
    if !envoy_binary().exists() {
        missing.push(envoy_binary());
    }
    if !missing.is_empty() {
        bail!(
            "not built yet: {}; run `cargo xtask build` and `cargo xtask envoy` first",
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
