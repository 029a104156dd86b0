//! Tried as an outsider would: authlib (from PyPI, in a test-local venv under the git-ignored
//! `.tools/`) runs authorization code + PKCE against the real server, with a plain HTTP user
//! agent posting the login and consent forms, then refreshes, then revokes
//! (`tests/python/authlib_code_flow.py`).

// Test code states its expectations bluntly; the no-panic rule is for service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// This test's own venv (so it never races another test creating a shared one), with the
/// third-party client requirements; rebuilt only when they change.
fn python_venv() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements = manifest.join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    let venv = manifest
        .parent()
        .unwrap()
        .join(".tools/authz-browser-pyvenv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".installed-requirements");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed for the authlib test");
    assert!(status.success(), "creating the venv failed");
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "pip install of the test requirements failed"
    );
    std::fs::write(&stamp, wanted).unwrap();
    python
}

#[test]
fn authlib_completes_code_flow_with_pkce_then_refreshes_and_revokes() {
    let python = python_venv();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/authlib_code_flow.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&server.base)
        .arg(ISSUER)
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "authlib flow failed:\n{stdout}\n{}\nservice log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(stdout.contains("authlib: 3 passed, 0 failed"), "{stdout}");
}
