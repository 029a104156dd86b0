//! State that must survive: restarts, `kill -9` in the middle of a burst, key rotation.

// Test code states its expectations bluntly; the no-panic rule is for service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use authz_service::jwk::VerifyingKey;
use authz_service::storage::{SqliteStorage, Storage};
use common::*;
use jwt_simple::prelude::VerificationOptions;
use serde_json::Value;

async fn jwks(server: &Server) -> Value {
    http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

async fn cc_token(server: &Server, id: &str, secret: &str) -> String {
    let (status, _, body) = token_request(
        server,
        Some((id, secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

fn verifies_against(jwks: &Value, token: &str) -> bool {
    let kid = header(token)["kid"].as_str().unwrap().to_string();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] == kid.as_str())
        .filter_map(|k| VerifyingKey::from_jwk(k).ok())
        .any(|k| k.verify(token, VerificationOptions::default()).is_ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_clients_users_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let jwks_before = jwks(&server).await;

    // Admin commands work beside the running server (same SQLite file, WAL).
    let out = admin(
        dir.path(),
        &["client", "add", "svc", "--scope", "demo", "--scope", "read"],
        &[],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_string();
    assert!(secret.len() >= 43, "high-entropy secret expected");
    admin(
        dir.path(),
        &["user", "add", "alice"],
        &[("AUTHZ_NEW_PASSWORD", "correct horse")],
    );
    let before = cc_token(&server, "svc", &secret).await;

    server.stop();
    // Restart without --demo: nothing is re-created, everything is still there.
    let server = Server::start(dir.path(), &[]);
    assert_eq!(jwks(&server).await, jwks_before, "the signing key changed");
    assert!(verifies_against(&jwks(&server).await, &before));
    let after = cc_token(&server, "svc", &secret).await;
    assert_eq!(header(&after)["kid"], header(&before)["kid"]);
    let users = String::from_utf8(admin(dir.path(), &["user", "list"], &[]).stdout).unwrap();
    assert_eq!(users.lines().collect::<Vec<_>>(), ["alice", "bob"]);
    let clients = String::from_utf8(admin(dir.path(), &["client", "list"], &[]).stdout).unwrap();
    assert!(clients.contains("\"id\":\"svc\""), "{clients}");
    assert!(!clients.contains(&secret));
    assert!(
        !clients.contains("hmac-sha256$"),
        "list must not show hashes"
    );

    // Removing works and is durable.
    admin(dir.path(), &["client", "remove", "svc"], &[]);
    let (status, _, _) = token_request(
        &server,
        Some(("svc", &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_burst_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let url = server.url("/oauth2/token");

    // Four workers request tokens as fast as they can; every token a client received is a
    // committed record (the service records before it answers).
    let received = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        let received = received.clone();
        workers.push(tokio::spawn(async move {
            let client = http();
            while Instant::now() < deadline {
                let resp = client
                    .post(&url)
                    .basic_auth("123", Some("secret"))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                if let Ok(body) = resp.json::<Value>().await
                    && let Some(t) = body["access_token"].as_str()
                {
                    received
                        .lock()
                        .unwrap()
                        .push(claims(t)["jti"].as_str().unwrap().into());
                } else {
                    break;
                }
            }
        }));
    }
    // Let the burst run, then kill mid-flight.
    while received.lock().unwrap().len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    for w in workers {
        w.await.unwrap();
    }
    let jtis = received.lock().unwrap().clone();
    assert!(jtis.len() >= 200, "burst too small: {}", jtis.len());

    // The database opens cleanly, passes SQLite's integrity check, and holds every token.
    let db_path = dir.path().join("authz.sqlite");
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    let storage = SqliteStorage::open(&db_path).unwrap();
    let missing: Vec<&String> = jtis
        .iter()
        .filter(|j| storage.issued_token(j).unwrap().is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} tokens lost",
        missing.len(),
        jtis.len()
    );
    drop(storage);

    // And the service starts again on it and keeps working.
    let server = Server::start(dir.path(), &[]);
    cc_token(&server, "123", "secret").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_publishes_first_and_both_keys_validate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let first = cc_token(&server, "123", "secret").await;
    let old_kid = header(&first)["kid"].as_str().unwrap().to_string();

    // Rotate to an ES256 key that signs in 3 s.
    let out = admin(
        dir.path(),
        &["keys", "rotate", "--alg", "ES256", "--activate-in", "3"],
        &[],
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_eq!(rotated["state"], "pending");
    let rotated_at = Instant::now();

    // Published at once, but the old key still signs.
    let published = jwks(&server).await;
    assert_eq!(kids(&published), [old_kid.clone(), new_kid.clone()]);
    let before_activation = cc_token(&server, "123", "secret").await;
    assert_eq!(header(&before_activation)["kid"], old_kid.as_str());
    assert!(
        rotated_at.elapsed() < Duration::from_secs(3),
        "machine too slow for this test"
    );

    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(rotated_at.elapsed())).await;
    let second = cc_token(&server, "123", "secret").await;
    assert_eq!(header(&second)["kid"], new_kid.as_str());
    assert_eq!(header(&second)["alg"], "ES256");

    // Both tokens validate against the one JWKS verifiers fetch now: the old key stays until
    // its last token expires.
    let published = jwks(&server).await;
    assert_eq!(kids(&published).len(), 2);
    assert!(verifies_against(&published, &first));
    assert!(verifies_against(&published, &second));
    let list = String::from_utf8(admin(dir.path(), &["keys", "list"], &[]).stdout).unwrap();
    let states: Vec<Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(states[0]["state"], "retiring");
    assert_eq!(states[1]["state"], "active");
    // Nothing to prune while the old key's tokens live.
    let pruned = String::from_utf8(admin(dir.path(), &["keys", "prune"], &[]).stdout).unwrap();
    assert!(pruned.is_empty(), "{pruned}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retired_key_leaves_the_jwks_after_its_last_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    // Short-lived tokens so the old key retires within the test.
    let server = Server::start(dir.path(), &["--token-lifetime-secs", "2"]);
    let first = cc_token(&server, "123", "secret").await;
    let old_kid = header(&first)["kid"].as_str().unwrap().to_string();
    admin(dir.path(), &["keys", "rotate", "--activate-in", "0"], &[]);
    let second = cc_token(&server, "123", "secret").await;
    assert_ne!(header(&second)["kid"], old_kid.as_str());
    assert!(kids(&jwks(&server).await).contains(&old_kid));
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(!kids(&jwks(&server).await).contains(&old_kid));
    let pruned = String::from_utf8(admin(dir.path(), &["keys", "prune"], &[]).stdout).unwrap();
    assert_eq!(pruned.trim(), format!("pruned {old_kid}"));
}
