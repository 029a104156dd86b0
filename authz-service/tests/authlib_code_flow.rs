//! Tried as an outsider would: authlib (from PyPI, in a test-local venv under the git-ignored
//! `.tools/`) runs authorization code + PKCE against the real server, with a plain HTTP user
//! agent posting the login and consent forms, then refreshes, then revokes
//! (`tests/python/authlib_code_flow.py`).

// Test code states its expectations bluntly; the no-panic rule is for service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn authlib_completes_code_flow_with_pkce_then_refreshes_and_revokes() {
    let python = python_venv("authz-browser-pyvenv");
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
