//! The service's shared state (`Authz`): configuration, storage, clock, and caches. Built once
//! at start-up; every request borrows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::OAuthError;
use crate::keys::SigningKey;
use crate::secrets::SecretHasher;
use crate::storage::{KeyRecord, SqliteStorage, Storage};
use crate::throttle::Throttle;

/// Name of the stored key that client secrets are hashed under.
const SECRET_HASH_KEY: &str = "client_secret_hmac_key";

pub struct Authz {
    pub config: Config,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    pub hasher: SecretHasher,
    pub throttle: Throttle,
    /// Browser flows: signing key of sessions/CSRF, login throttles.
    pub flows: crate::flows::FlowState,
    /// Parsed private keys by kid (a kid's key never changes).
    key_cache: Mutex<HashMap<String, Arc<SigningKey>>>,
}

impl Authz {
    /// Open the data directory (created private to this user), the database, and make sure a
    /// signing key exists. Seeds the demo data when `config.demo` is set.
    pub fn open(config: Config) -> anyhow::Result<Authz> {
        config.validate().map_err(anyhow::Error::msg)?;
        create_private_dir(&config.data_dir)?;
        let storage = SqliteStorage::open(&config.database_path())?;
        let authz = Authz::with_parts(config, Arc::new(storage), Arc::new(SystemClock))?;
        authz.ensure_signing_key()?;
        if authz.config.demo {
            crate::demo::seed(&authz)?;
        }
        Ok(authz)
    }

    /// Assemble from parts (tests pass an in-memory store and a manual clock).
    pub fn with_parts(
        config: Config,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Authz> {
        let key = storage.secret_setting(SECRET_HASH_KEY, &|| {
            crate::secrets::random_bytes(32).unwrap_or_default()
        })?;
        if key.len() < 32 {
            anyhow::bail!("the stored client-secret hashing key is too short");
        }
        let throttle = Throttle::new(
            config.security.auth_failure_limit,
            config.security.auth_failure_window_secs,
        );
        let flows = crate::flows::FlowState::new(&config.browser, storage.as_ref())?;
        Ok(Authz {
            flows,
            config,
            storage,
            clock,
            hasher: SecretHasher::new(key),
            throttle,
            key_cache: Mutex::new(HashMap::new()),
        })
    }

    /// On first start there is no key: make one that signs at once.
    pub fn ensure_signing_key(&self) -> anyhow::Result<()> {
        if self.storage.keys()?.is_empty() {
            let now = self.clock.now();
            let record = crate::keys::new_key_record(self.config.keys.algorithm, now, now)
                .map_err(anyhow::Error::msg)?;
            tracing::info!(kid = %record.kid, alg = %record.alg, "created the first signing key");
            self.storage.insert_key(&record)?;
        }
        Ok(())
    }

    /// Add a key that is published now and signs after `delay_secs` (key rotation).
    pub fn rotate_key(
        &self,
        alg: crate::keys::SigningAlg,
        delay_secs: i64,
    ) -> anyhow::Result<KeyRecord> {
        let now = self.clock.now();
        let record = crate::keys::new_key_record(alg, now, now.saturating_add(delay_secs))
            .map_err(anyhow::Error::msg)?;
        self.storage.insert_key(&record)?;
        Ok(record)
    }

    pub(crate) fn signing_key(&self, record: &KeyRecord) -> Result<Arc<SigningKey>, OAuthError> {
        let mut cache = self.key_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(&record.kid) {
            return Ok(k.clone());
        }
        let key = Arc::new(crate::issuer::load_key(record)?);
        cache.insert(record.kid.clone(), key.clone());
        Ok(key)
    }

    /// The JWKS document to publish now.
    pub fn jwks(&self) -> Result<serde_json::Value, OAuthError> {
        Ok(crate::keys::jwks(&self.storage.keys()?, self.clock.now()))
    }
}

fn create_private_dir(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| anyhow::anyhow!("creating data directory {}: {e}", path.display()))?;
    }
    Ok(())
}
