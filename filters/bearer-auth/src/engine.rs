//! The decision for one request: which rule applies, where the token is, whether it verifies
//! (from the cache or in full), whether its scopes suffice, and what to tell later filters.
//!
//! Plain Rust: the adapter hands in the few request values it read from the host and the time,
//! and applies the returned `Outcome`.

use std::rc::Rc;

use wasmgate_filter_common::RequestInfo;

use crate::cache::{TokenCache, hash_token};
use crate::challenge::Denial;
use crate::config::{Config, JwksSource};
use crate::extract::{Found, extract, strip_query_token};
use crate::jwks::KeySet;
use crate::metrics::{Metric, Metrics};
use crate::policy::Requirement;
use crate::verify::{Identity, TokenError, Verifier};

pub const SUBJECT_HEADER: &str = "x-auth-subject";
pub const CLIENT_ID_HEADER: &str = "x-auth-client-id";
pub const SCOPE_HEADER: &str = "x-auth-scope";
/// Any incoming header with this prefix is removed before the request goes on, so a client can
/// never speak for itself to later filters or the upstream.
pub const IDENTITY_HEADER_PREFIX: &str = "x-auth-";

/// What the adapter read from the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub info: RequestInfo<'a>,
    /// The raw `authorization` header value (bytes: it may not be valid text).
    pub authorization: Option<&'a [u8]>,
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow(Allow),
    Deny(Denial),
    /// Keys this VM does not have are needed; the adapter pauses the request (or answers, if it
    /// may not wait) and asks the engine again with `may_wait: false` once it knows more.
    NeedKeys(Wait),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No key set yet.
    NoKeys,
    /// The token names a `kid` not in our key set.
    UnknownKid,
}

/// A request let through, and the header changes that go with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allow {
    /// An anonymous route: nothing was checked.
    pub anonymous: bool,
    /// Headers to set after every `x-auth-*` header was removed.
    pub set_headers: Vec<(String, String)>,
    pub remove_authorization: bool,
    /// A new `:path` without the `access_token` parameter, when it must not go upstream.
    pub new_path: Option<String>,
}

/// How the engine may answer when keys are missing.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    pub may_wait: bool,
    /// Used in the 503 when there are no keys and waiting is not possible.
    pub retry_after_seconds: u64,
}

pub struct Engine {
    config: Config,
    verifier: Verifier,
    cache: TokenCache,
    keys: Option<Rc<KeySet>>,
    /// Which shared-data generation `keys` came from (0: none; inline keys never change).
    generation: u64,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        let keys = match &config.jwks {
            JwksSource::Inline(set) => Some(Rc::new(set.clone())),
            JwksSource::Remote(_) => None,
        };
        Self {
            verifier: Verifier::new(&config),
            cache: TokenCache::new(config.cache_max_entries),
            keys,
            generation: 0,
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Installs a key set read from shared data; cached verifications are dropped so a key
    /// withdrawn from the JWKS stops vouching for tokens at once.
    pub fn set_keys(&mut self, keys: KeySet, generation: u64) {
        self.keys = Some(Rc::new(keys));
        self.generation = generation;
        self.cache.clear();
    }

    /// Remembers that `generation` was seen even if its document could not be used, so it is
    /// not parsed again on every tick.
    pub fn mark_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    pub fn decide(
        &mut self,
        req: &RequestView<'_>,
        now_ms: u64,
        wait: WaitPolicy,
        metrics: &dyn Metrics,
    ) -> Outcome {
        let requirement = self.config.rules.requirement(&req.info).clone();
        if requirement == Requirement::Anonymous {
            // Authorization is left alone: the token endpoint uses it for client credentials.
            return Outcome::Allow(Allow {
                anonymous: true,
                ..Allow::default()
            });
        }
        let found = match extract(
            req.authorization,
            req.info.path,
            self.config.allow_query_token,
        ) {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Deny(Denial::NoToken),
            Err(e) => return Outcome::Deny(Denial::InvalidRequest(e)),
        };
        let now = now_ms / 1000;
        let identity = match self.identity(found.token(), now, wait, metrics) {
            Ok(identity) => identity,
            Err(outcome) => return outcome,
        };
        if let Requirement::Scopes(required) = &requirement
            && !identity.has_scopes(required)
        {
            return Outcome::Deny(Denial::InsufficientScope(required.clone()));
        }
        Outcome::Allow(self.allow(&identity, &found, req.info.path))
    }

    fn identity(
        &mut self,
        token: &str,
        now: u64,
        wait: WaitPolicy,
        metrics: &dyn Metrics,
    ) -> Result<Identity, Outcome> {
        // Oversized tokens are refused before anything, hashing included.
        if token.len() > self.verifier.max_token_bytes() {
            return Err(Outcome::Deny(Denial::InvalidToken(TokenError::TooLarge)));
        }
        let hash = hash_token(token);
        if let Some(identity) = self.cache.get(&hash, now) {
            metrics.count(Metric::CacheHit);
            return Ok(identity.clone());
        }
        metrics.count(Metric::CacheMiss);
        let remote = matches!(self.config.jwks, JwksSource::Remote(_));
        let empty = KeySet::default();
        let keys = self.keys.as_deref().unwrap_or(&empty);
        match self.verifier.verify(token, keys, now) {
            Ok(identity) => {
                self.cache.insert(hash, identity.clone(), now);
                Ok(identity)
            }
            // No key set yet: a token that needs a key waits for the first fetch or gets 503;
            // it is never let through unverified.
            Err(TokenError::UnknownKid(_) | TokenError::NoKeyForToken) if self.keys.is_none() => {
                if wait.may_wait && remote {
                    Err(Outcome::NeedKeys(Wait::NoKeys))
                } else {
                    Err(Outcome::Deny(Denial::KeysUnavailable {
                        retry_after_seconds: wait.retry_after_seconds,
                    }))
                }
            }
            Err(TokenError::UnknownKid(_)) if wait.may_wait && remote => {
                Err(Outcome::NeedKeys(Wait::UnknownKid))
            }
            Err(e) => Err(Outcome::Deny(Denial::InvalidToken(e))),
        }
    }

    fn allow(&self, identity: &Identity, found: &Found, path: &str) -> Allow {
        let mut set_headers = Vec::new();
        if let Some(sub) = &identity.subject {
            set_headers.push((SUBJECT_HEADER.to_string(), sub.clone()));
        }
        if let Some(client) = &identity.client_id {
            set_headers.push((CLIENT_ID_HEADER.to_string(), client.clone()));
        }
        set_headers.push((SCOPE_HEADER.to_string(), identity.scopes.join(" ")));
        set_headers.extend(identity.extra_headers.iter().cloned());
        let forward = self.config.forward_authorization;
        Allow {
            anonymous: false,
            set_headers,
            remove_authorization: !forward && matches!(found, Found::Header(_)),
            new_path: (!forward && matches!(found, Found::Query(_)))
                .then(|| strip_query_token(path)),
        }
    }
}

#[cfg(test)]
mod tests;
