//! Tried as an outsider would: Python's authlib (client_secret_basic/post, private_key_jwt, JWT
//! bearer grant, RFC 8414 metadata checks) and PyJWT with its JWKS client, from PyPI, in a
//! test-local venv under the git-ignored `.tools/` (created once, reused while the pinned
//! requirements are unchanged).

// Test code states its expectations bluntly; the no-panic rule is for service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The venv's python, creating or updating the venv if the requirements changed.
fn python_venv() -> PathBuf {
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    let venv = workspace_root().join(".tools/authz-pyvenv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".installed-requirements");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed for the third-party client tests");
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
fn authlib_and_pyjwt_work_with_the_service() {
    let python = python_venv();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/third_party_clients.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&server.base)
        .arg(ISSUER)
        .arg(dir.path().join("demo-jwt-client.pem"))
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "third-party clients failed:\n{stdout}\n{}\nservice log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(stdout.contains("python: 6 passed, 0 failed"), "{stdout}");
}
