//! The upstream every proxied configuration talks to: nginx with one worker, on the load
//! generator's core, answering from memory.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xtask::process::{Echo, ManagedProcess};
use xtask::render::substitute;

use crate::bench::configs::{UPSTREAM_BODY, UPSTREAM_LIMITED_PATH, UPSTREAM_RATE_LIMIT, bench_dir};
use crate::bench::cpus::pinned;
use crate::bench::http;

/// Starts nginx on `port` and waits until it answers.
pub fn start(port: u16, cpu: Option<usize>, run_dir: &Path) -> Result<ManagedProcess> {
    let template_path = bench_dir().join("nginx.conf.tmpl");
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    let vars = BTreeMap::from([
        ("RUN_DIR".to_owned(), run_dir.display().to_string()),
        ("UPSTREAM_PORT".to_owned(), port.to_string()),
        ("UPSTREAM_BODY".to_owned(), UPSTREAM_BODY.to_owned()),
        (
            "UPSTREAM_LIMITED_PATH".to_owned(),
            UPSTREAM_LIMITED_PATH.to_owned(),
        ),
        (
            "UPSTREAM_RATE_LIMIT".to_owned(),
            UPSTREAM_RATE_LIMIT.to_owned(),
        ),
    ]);
    let conf = substitute(&template, &vars)?;
    let conf_path = run_dir.join("nginx.conf");
    fs::write(&conf_path, conf)?;
    let mut command = pinned(cpu, "nginx");
    // -p: nginx's prefix (no writes under /var); -e: its early error log, before the config.
    command
        .arg("-p")
        .arg(run_dir)
        .arg("-e")
        .arg(run_dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&conf_path);
    let mut nginx =
        ManagedProcess::spawn("nginx", command, &run_dir.join("nginx.log"), Echo::Quiet)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http::request(addr, "GET", "/api/notes", &[], "", Duration::from_secs(1))
            && r.status == 200
        {
            return Ok(nginx);
        }
        if let Some(status) = nginx.exited() {
            bail!("nginx exited ({status}): {}", nginx.log());
        }
        if Instant::now() > deadline {
            bail!(
                "nginx did not answer on {addr} within 10 s: {}",
                nginx.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
