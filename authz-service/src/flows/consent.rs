//! Remembered consent: a user who ticked "remember" is not asked again by the same client for
//! the same scopes (or fewer).

use crate::service::Authz;
use crate::storage::StorageError;

/// Whether `subject` already allowed `client_id` every scope in `scopes`.
pub fn remembered(
    authz: &Authz,
    subject: &str,
    client_id: &str,
    scopes: &[String],
) -> Result<bool, StorageError> {
    let known = authz.storage.remembered_consent(subject, client_id)?;
    Ok(!scopes.is_empty() && scopes.iter().all(|s| known.contains(s)))
}

pub fn remember(
    authz: &Authz,
    subject: &str,
    client_id: &str,
    scopes: &[String],
) -> Result<(), StorageError> {
    authz
        .storage
        .remember_consent(subject, client_id, scopes, authz.clock.now())
}
