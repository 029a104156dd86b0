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

/// Makes sure a Debian package's command exists, installing the package with apt if not.
/// Used for test-only tools (docker-compose, chromium) so a fresh CI machine needs no setup.
pub fn ensure_debian_command(command: &str, package: &str) -> Result<()> {
    if output(Command::new("sh").args(["-c", &format!("command -v {command}")])).is_some() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian package {package} (for `{command}`)");
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut c = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    if apt(&["install", "-y", "-q", package]).is_err() {
        apt(&["update", "-q"])?;
        apt(&["install", "-y", "-q", package])?;
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
