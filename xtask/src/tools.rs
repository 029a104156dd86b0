//! Running external commands with errors that say what failed and how to fix it.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `command`, inheriting stdout/stderr, and fails with its command line if it fails.
pub fn run(command: &mut Command) -> Result<()> {
    let line = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its stdout, or `None` if it cannot run or fails.
pub fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `cargo` command using the same cargo as the one running us.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(crate::paths::root());
    command
}

/// Makes sure each `(command, Debian package)` is available, installing the missing packages
/// with one apt-get call. Used for test-only tools (docker-compose, chromium) so a fresh CI
/// machine needs no manual setup; quick when all are present.
pub fn ensure_debian_commands(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(command, _)| {
            output(Command::new("sh").args(["-c", &format!("command -v {command}")])).is_none()
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut command = if is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    let install = |apt: &dyn Fn(&[&str]) -> Result<()>| {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        apt(&args)
    };
    // The package lists of a fresh machine may be missing or stale: update once and retry.
    if install(&apt).is_err() {
        apt(&["update", "-q"])?;
        install(&apt)?;
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Installs `deploy/validate/package.json` (Istio's CRD schemas for node) into
/// `.tools/node-validate/` with `npm ci`, unless the same lock file is installed there already.
/// Returns the `node_modules` directory `deploy/validate/validate.mjs` reads.
pub fn ensure_node_validator() -> Result<std::path::PathBuf> {
    let source = crate::paths::deploy_dir().join("validate");
    let dir = crate::paths::tools_dir().join("node-validate");
    let lock = std::fs::read(source.join("package-lock.json"))
        .context("cannot read deploy/validate/package-lock.json")?;
    let stamp = dir.join("installed-lock.sha256");
    let wanted = crate::oci::sha256_hex(&lock);
    let modules = dir.join("node_modules");
    if modules.is_dir() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(modules);
    }
    eprintln!(
        "xtask: installing the manifest validator (npm ci) into {}",
        dir.display()
    );
    std::fs::create_dir_all(&dir)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), dir.join(file))?;
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))
    .context("npm (with node) is needed to validate the Istio manifests")?;
    std::fs::write(&stamp, wanted)?;
    Ok(modules)
}
