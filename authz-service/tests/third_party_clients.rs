//! Tried as an outsider would: Python's authlib (client_secret_basic/post, private_key_jwt, JWT
//! bearer grant, RFC 8414 metadata checks) and PyJWT with its JWKS client, from PyPI, in a
//! test-local venv under the git-ignored `.tools/` (created once, reused while the pinned
//! requirements are unchanged).

// Test code states its expectations bluntly; the no-panic rule is for service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn authlib_and_pyjwt_work_with_the_service() {
    let python = python_venv("authz-pyvenv");
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
