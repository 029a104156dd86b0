//! Administration used by the command line: clients, users, keys.

use crate::keys::{KeyState, SigningAlg};
use crate::service::Authz;
use crate::storage::{Client, User};

/// What `client add` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub id: String,
    pub public: bool,
    /// Give the client a (generated) secret. Off for public clients and key-only clients.
    pub with_secret: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Option<Vec<String>>,
    pub token_lifetime_secs: Option<i64>,
    pub jwks: Option<serde_json::Value>,
}

/// Register a client. Returns the generated secret, which is shown once and never stored.
pub fn add_client(authz: &Authz, new: NewClient) -> anyhow::Result<Option<String>> {
    if new.id.is_empty() || new.id.contains(':') {
        anyhow::bail!("a client id must be non-empty and contain no `:`");
    }
    if new.public && new.with_secret {
        anyhow::bail!("a public client can't have a secret");
    }
    for g in &new.grant_types {
        let known = crate::grants::SUPPORTED.contains(&g.as_str())
            || g == "authorization_code"
            || g == "refresh_token";
        if !known {
            anyhow::bail!("unknown grant type `{g}`");
        }
    }
    for s in &new.scopes {
        crate::scope::parse(s).map_err(|e| anyhow::anyhow!("{}", e.description))?;
    }
    for uri in &new.redirect_uris {
        check_redirect_uri(uri)?;
    }
    if let Some(jwks) = &new.jwks {
        crate::jwk::validate_jwks(jwks).map_err(anyhow::Error::msg)?;
    }
    let default_scopes = new.default_scopes.unwrap_or_else(|| new.scopes.clone());
    if let Some(s) = default_scopes.iter().find(|s| !new.scopes.contains(s)) {
        anyhow::bail!("default scope `{s}` is not among the client's scopes");
    }
    let secret = if new.with_secret {
        Some(crate::secrets::random_token(32)?)
    } else {
        None
    };
    authz.storage.insert_client(&Client {
        id: new.id,
        secret_hash: secret.as_deref().map(|s| authz.hasher.hash(s)),
        public: new.public,
        redirect_uris: new.redirect_uris,
        grant_types: new.grant_types,
        scopes: new.scopes,
        default_scopes,
        token_lifetime_secs: new.token_lifetime_secs,
        jwks: new.jwks,
        created_at: authz.clock.now(),
    })?;
    Ok(secret)
}

/// Redirect URIs are compared exactly later, so they must be absolute and fragment-free now
/// (RFC 6749 §3.1.2); plain http only for loopback hosts (RFC 8252 §7.3).
fn check_redirect_uri(uri: &str) -> anyhow::Result<()> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| anyhow::anyhow!("redirect URI `{uri}` must be an absolute http(s) URL"))?;
    if uri.contains('#') {
        anyhow::bail!("redirect URI `{uri}` must not have a fragment");
    }
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() {
        anyhow::bail!("redirect URI `{uri}` has no host");
    }
    let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let loopback = matches!(hostname, "localhost" | "127.0.0.1" | "[::1]");
    if uri.starts_with("http://") && !loopback {
        anyhow::bail!("redirect URI `{uri}` must use https (http only for loopback)");
    }
    Ok(())
}

pub fn add_user(authz: &Authz, username: &str, password: &str) -> anyhow::Result<()> {
    if username.is_empty() {
        anyhow::bail!("a username must not be empty");
    }
    if password.len() < 8 {
        anyhow::bail!("a password must have at least 8 characters");
    }
    authz.storage.insert_user(&User {
        username: username.into(),
        password_hash: crate::secrets::hash_password(password).map_err(anyhow::Error::msg)?,
        created_at: authz.clock.now(),
    })?;
    Ok(())
}

/// One line of `keys list`.
#[derive(Debug, serde::Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    pub created_at: i64,
    pub activates_at: i64,
    pub last_token_exp: Option<i64>,
}

pub fn list_keys(authz: &Authz) -> anyhow::Result<Vec<KeyInfo>> {
    let keys = authz.storage.keys()?;
    let now = authz.clock.now();
    Ok(keys
        .iter()
        .map(|k| KeyInfo {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            state: crate::keys::key_state(&keys, k, now),
            created_at: k.created_at,
            activates_at: k.activates_at,
            last_token_exp: k.last_token_exp,
        })
        .collect())
}

/// Delete the keys that are retired (unpublished, no valid token left). Returns their kids.
pub fn prune_keys(authz: &Authz) -> anyhow::Result<Vec<String>> {
    let mut pruned = Vec::new();
    for k in list_keys(authz)? {
        if k.state == KeyState::Retired {
            authz.storage.delete_key(&k.kid)?;
            pruned.push(k.kid);
        }
    }
    Ok(pruned)
}

pub fn rotate_key(
    authz: &Authz,
    alg: Option<SigningAlg>,
    delay_secs: Option<i64>,
) -> anyhow::Result<KeyInfo> {
    let alg = alg.unwrap_or(authz.config.keys.algorithm);
    let delay = delay_secs.unwrap_or(authz.config.keys.activation_delay_secs);
    if delay < 0 {
        anyhow::bail!("the activation delay must not be negative");
    }
    let r = authz.rotate_key(alg, delay)?;
    Ok(KeyInfo {
        kid: r.kid,
        alg: r.alg,
        state: if delay == 0 {
            KeyState::Active
        } else {
            KeyState::Pending
        },
        created_at: r.created_at,
        activates_at: r.activates_at,
        last_token_exp: None,
    })
}

#[cfg(test)]
mod tests {
    use super::check_redirect_uri;

    #[test]
    fn redirect_uris_must_be_absolute_https_without_fragment() {
        for ok in [
            "https://app.example/cb",
            "https://localhost:8443/callback",
            "http://127.0.0.1:8080/cb?x=1",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/callback",
            "app.example/cb",
            "https://app.example/cb#frag",
            "http://app.example/cb",
            "https:///cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
