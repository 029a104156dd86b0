//! Durable state behind one trait, so a PostgreSQL backend can be added without touching the
//! grant logic. Every method is one atomic unit: when it returns `Ok`, the change is committed.

pub mod flows;
mod sqlite;

pub use flows::FlowStore;
pub use sqlite::SqliteStorage;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    /// Keyed hash of the client secret (see `secrets::SecretHasher`); `None` if the client has
    /// no secret (public, or authenticating with `private_key_jwt` only).
    pub secret_hash: Option<String>,
    /// Public clients can't keep a secret: they never get `client_credentials`.
    pub public: bool,
    /// Compared exactly, character for character.
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// Granted when a request names no scope.
    pub default_scopes: Vec<String>,
    /// Access token lifetime for this client; the service default when `None`.
    pub token_lifetime_secs: Option<i64>,
    /// Registered public keys (a JWKS document) for `private_key_jwt` and JWT bearer assertions.
    pub jwks: Option<serde_json::Value>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    /// PHC-format argon2 hash.
    pub password_hash: String,
    pub created_at: i64,
}

/// A signing key. The private part is stored as PKCS#8 / PKCS#1 DER.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub private_der: Vec<u8>,
    /// Public JWK, as published.
    pub public_jwk: serde_json::Value,
    pub created_at: i64,
    /// When this key starts signing (it is published from `created_at`).
    pub activates_at: i64,
    /// The latest `exp` of the tokens it signed that are still recorded (filled on read).
    pub last_token_exp: Option<i64>,
}

/// What we remember about an access token we issued (for key retention, and for the
/// introspection and revocation endpoints to come).
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    pub jti: String,
    pub kid: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// `FlowStore` holds the browser flows' records (codes, refresh tokens, grants, consent).
pub trait Storage: FlowStore + Send + Sync {
    fn client(&self, id: &str) -> Result<Option<Client>>;
    /// Fails with `Conflict` if the id is taken.
    fn insert_client(&self, client: &Client) -> Result<()>;
    fn list_clients(&self) -> Result<Vec<Client>>;
    fn delete_client(&self, id: &str) -> Result<bool>;

    fn user(&self, username: &str) -> Result<Option<User>>;
    fn insert_user(&self, user: &User) -> Result<()>;
    fn list_users(&self) -> Result<Vec<User>>;
    fn delete_user(&self, username: &str) -> Result<bool>;

    /// All keys, oldest activation first, with `last_token_exp` filled in.
    fn keys(&self) -> Result<Vec<KeyRecord>>;
    fn insert_key(&self, key: &KeyRecord) -> Result<()>;
    fn delete_key(&self, kid: &str) -> Result<bool>;

    /// Record that the assertion `jti` from `issuer` was used, valid until `expires_at`.
    /// Returns `false` if it had been used before (a replay). Atomic: of two concurrent calls
    /// with the same pair, exactly one gets `true`.
    fn consume_jti(&self, issuer: &str, jti: &str, expires_at: i64) -> Result<bool>;

    fn record_token(&self, token: &IssuedToken) -> Result<()>;
    fn issued_token(&self, jti: &str) -> Result<Option<IssuedToken>>;

    /// A named secret value (e.g. the client-secret hashing key), created by `make` on first
    /// use. Concurrent first uses agree on one value.
    fn secret_setting(&self, name: &str, make: &dyn Fn() -> Vec<u8>) -> Result<Vec<u8>>;

    /// Forget used `jti`s and issued tokens that expired before `now`.
    fn purge_expired(&self, now: i64) -> Result<()>;
}
