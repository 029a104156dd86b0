//! Demo data of DESIGN.md, created on start when the demo flag is on. For the demo only: a real
//! deployment never runs with it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::grants::{CLIENT_CREDENTIALS, JWT_BEARER};
use crate::keys::{SigningAlg, SigningKey};
use crate::service::Authz;
use crate::storage::{Client, User};

pub const DEMO_CLIENT_ID: &str = "123";
pub const DEMO_CLIENT_SECRET: &str = "secret";
pub const DEMO_USER: &str = "bob";
pub const DEMO_PASSWORD: &str = "secret";
/// The second demo client, which authenticates with `private_key_jwt` and uses the JWT bearer
/// grant; its private key is written to [`JWT_CLIENT_KEY_FILE`] in the data directory.
pub const JWT_CLIENT_ID: &str = "jwt-demo";
pub const JWT_CLIENT_KEY_FILE: &str = "demo-jwt-client.pem";

/// Create whatever part of the demo data is missing (idempotent).
pub fn seed(authz: &Authz) -> anyhow::Result<()> {
    let now = authz.clock.now();
    let s = &authz.storage;
    if s.client(DEMO_CLIENT_ID)?.is_none() {
        s.insert_client(&Client {
            id: DEMO_CLIENT_ID.into(),
            secret_hash: Some(authz.hasher.hash(DEMO_CLIENT_SECRET)),
            public: false,
            redirect_uris: vec![format!("{}/callback", authz.config.base_url())],
            grant_types: vec![
                "authorization_code".into(),
                "refresh_token".into(),
                CLIENT_CREDENTIALS.into(),
            ],
            scopes: vec!["demo".into()],
            default_scopes: vec!["demo".into()],
            token_lifetime_secs: None,
            jwks: None,
            created_at: now,
        })?;
        tracing::info!("demo: created client {DEMO_CLIENT_ID}");
    }
    if s.user(DEMO_USER)?.is_none() {
        s.insert_user(&User {
            username: DEMO_USER.into(),
            password_hash: crate::secrets::hash_password(DEMO_PASSWORD)
                .map_err(anyhow::Error::msg)?,
            created_at: now,
        })?;
        tracing::info!("demo: created user {DEMO_USER}");
    }
    if s.client(JWT_CLIENT_ID)?.is_none() {
        let key = SigningKey::generate(SigningAlg::EdDSA).map_err(anyhow::Error::msg)?;
        let kid = key.thumbprint();
        let path = authz.config.data_dir.join(JWT_CLIENT_KEY_FILE);
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(key.to_pem().map_err(anyhow::Error::msg)?.as_bytes())?;
        f.sync_all()?;
        s.insert_client(&Client {
            id: JWT_CLIENT_ID.into(),
            secret_hash: None,
            public: false,
            redirect_uris: vec![],
            grant_types: vec![CLIENT_CREDENTIALS.into(), JWT_BEARER.into()],
            scopes: vec!["demo".into()],
            default_scopes: vec!["demo".into()],
            token_lifetime_secs: None,
            jwks: Some(serde_json::json!({"keys": [key.public_jwk(&kid)]})),
            created_at: now,
        })?;
        tracing::info!(
            "demo: created client {JWT_CLIENT_ID}, private key in {} (kid {kid})",
            path.display()
        );
    }
    Ok(())
}
