//! Storage of the browser flows: grants (one per user authorization), authorization codes,
//! refresh tokens, revocations and remembered consent. Codes and refresh tokens are stored only
//! as SHA-256 hashes, so a copy of the database can't be replayed against us.

use super::Result;

/// One authorization a user gave a client: every code, refresh token and access token that
/// comes from it carries its id, so revoking the grant revokes them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub created_at: i64,
}

/// An authorization code, bound to its client, redirect URI and PKCE challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub subject: String,
    pub scope: String,
    /// The S256 challenge, when the client sent one.
    pub code_challenge: Option<String>,
    pub expires_at: i64,
}

/// What happened when a code was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeUse {
    /// First use: the code is now spent.
    Fresh(CodeRecord),
    /// Spent before: a replay, the grant must be revoked.
    Reused {
        grant_id: String,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A stored refresh token and whether it can still be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub record: RefreshRecord,
    /// Rotated away (used once already).
    pub used: bool,
    /// Revoked itself or through its grant.
    pub revoked: bool,
}

/// What happened when a refresh token was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: the token is now spent (rotated).
    Fresh(RefreshRecord),
    /// Spent before, or its grant revoked: the caller must not get tokens.
    Reused {
        grant_id: String,
    },
    Revoked {
        grant_id: String,
    },
    Unknown,
}

pub trait FlowStore {
    fn insert_grant(&self, grant: &GrantRecord) -> Result<()>;
    /// Mark the grant revoked (idempotent): its refresh tokens and access tokens stop working.
    fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<()>;
    fn grant_revoked(&self, grant_id: &str) -> Result<bool>;

    fn insert_code(&self, code: &CodeRecord) -> Result<()>;
    /// Spend a code. Atomic: of two concurrent calls with the same code, one gets `Fresh`.
    fn consume_code(&self, code_hash: &str, now: i64) -> Result<CodeUse>;

    /// Remember that the access token `jti` was issued from `grant_id`.
    fn link_access_token(&self, jti: &str, grant_id: &str) -> Result<()>;
    /// Revoke one access token (kept until it would have expired anyway).
    fn revoke_access_token(&self, jti: &str, expires_at: i64) -> Result<()>;
    /// Whether the access token was revoked, itself or through its grant.
    fn access_token_revoked(&self, jti: &str) -> Result<bool>;

    fn insert_refresh(&self, token: &RefreshRecord) -> Result<()>;
    /// Spend a refresh token. Atomic like `consume_code`.
    fn consume_refresh(&self, token_hash: &str, now: i64) -> Result<RefreshUse>;
    fn refresh_state(&self, token_hash: &str) -> Result<Option<RefreshState>>;

    /// The scopes `subject` allowed `client_id` to have without asking again.
    fn remembered_consent(&self, subject: &str, client_id: &str) -> Result<Vec<String>>;
    /// Add `scopes` to what is remembered for the pair.
    fn remember_consent(
        &self,
        subject: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<()>;

    /// Forget codes, refresh tokens and revocations that expired before `now`.
    fn purge_expired_flows(&self, now: i64) -> Result<()>;
}
