//! The decision for one request: which rule applies, where the token is, whether it verifies
//! (from the cache or in full), whether its scopes suffice, and what to tell later filters.
//!
//! Plain Rust: the adapter hands in the few request values it read from the host and the time,
//! and applies the returned `Outcome`.

use std::rc::Rc;

use wasmgate_filter_common::RequestInfo;
use wasmgate_filter_common::headers::OwnedHeaders;

use crate::cache::{CacheKey, TokenCache};
use crate::challenge::Denial;
use crate::config::{Config, JwksSource};
use crate::extract::{Found, bearer_candidate, extract, strip_query_token};
use crate::jwks::KeySet;
use crate::metrics::{Metric, Metrics};
use crate::policy::Requirement;
use crate::verify::{Identity, TokenError, Verifier};

pub const SUBJECT_HEADER: &str = "x-auth-subject";
pub const CLIENT_ID_HEADER: &str = "x-auth-client-id";
pub const SCOPE_HEADER: &str = "x-auth-scope";
/// Any incoming header with this prefix is removed before the request goes on, so a client can
/// never speak for itself to later filters or the upstream (and so are the `claim_headers`
/// named otherwise: `Engine::owned_headers`).
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
    /// Whom the token speaks for (`None` on an anonymous route): shared with the token cache.
    pub identity: Option<Rc<Identity>>,
    pub remove_authorization: bool,
    /// A new `:path` without the `access_token` parameter, when it must not go upstream.
    pub new_path: Option<String>,
}

impl Allow {
    /// The headers to set after the client's copies of the filter's own were removed
    /// (`Engine::owned_headers`): subject, client id (each if the token has one), scope, then
    /// the configured claim headers.
    pub fn identity_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.identity.iter().flat_map(|id| {
            let subject = id.subject.as_deref().map(|s| (SUBJECT_HEADER, s));
            let client_id = id.client_id.as_deref().map(|c| (CLIENT_ID_HEADER, c));
            let claims = id.extra_headers.iter();
            subject
                .into_iter()
                .chain(client_id)
                .chain(std::iter::once((SCOPE_HEADER, id.scope.as_str())))
                .chain(claims.map(|(name, value)| (name.as_str(), value.as_str())))
        })
    }
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
    /// The `claim_headers` outside `IDENTITY_HEADER_PREFIX`, which the prefix does not cover.
    claim_headers_outside_prefix: Vec<String>,
}

impl Engine {
    /// `cache_key`: the secret key of the token cache's hash (`CacheKey::random` in a VM).
    pub fn new(config: Config, cache_key: CacheKey) -> Self {
        let keys = match &config.jwks {
            JwksSource::Inline(set) => Some(Rc::new(set.clone())),
            JwksSource::Remote(_) => None,
        };
        let claim_headers_outside_prefix = config
            .claim_headers
            .iter()
            .map(|c| c.header.clone())
            .filter(|header| !header.starts_with(IDENTITY_HEADER_PREFIX))
            .collect();
        Self {
            verifier: Verifier::new(&config),
            cache: TokenCache::new(config.cache_max_entries, cache_key),
            keys,
            generation: 0,
            config,
            claim_headers_outside_prefix,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The request headers only this filter may write: every `x-auth-*` header and each of the
    /// `claim_headers`. A client's own copies are removed from every request let through, on
    /// every route, before the filter writes its own (a claim the token lacks leaves none).
    pub fn owned_headers(&self) -> OwnedHeaders<'_, String> {
        OwnedHeaders {
            prefix: Some(IDENTITY_HEADER_PREFIX),
            names: &self.claim_headers_outside_prefix,
        }
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
        let requirement = self.config.rules.requirement(&req.info);
        if *requirement == Requirement::Anonymous {
            // Authorization is left alone: the token endpoint uses it for client credentials.
            return Outcome::Allow(Allow {
                anonymous: true,
                ..Allow::default()
            });
        }
        let now = now_ms / 1000;
        // A token this VM verified before is found by its bytes first, before extraction checks
        // its syntax again: the cache only holds tokens that passed extraction and verification,
        // and its key is a keyed 128-bit hash of the bytes, so a hit is the same token. This is
        // the path of nearly every request, and the check it skips reads every byte of the token.
        let forward = self.config.forward_authorization;
        if let Some(identity) = cached_header_token(
            &mut self.cache,
            &self.verifier,
            self.config.allow_query_token,
            req,
            now,
        ) {
            metrics.count(Metric::CacheHit);
            return allow(requirement, identity, false, req, forward);
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
        let keys = Keys {
            set: self.keys.as_deref(),
            remote: matches!(self.config.jwks, JwksSource::Remote(_)),
        };
        let identity = match identity(
            &mut self.cache,
            &self.verifier,
            keys,
            found.token(),
            now,
            wait,
            metrics,
        ) {
            Ok(identity) => identity,
            Err(outcome) => return outcome,
        };
        let from_query = matches!(found, Found::Query(_));
        allow(requirement, identity, from_query, req, forward)
    }
}

/// The identity cached for the `Authorization: Bearer` token, looked up without checking the
/// token's syntax. Only where the header can be the one place a token is: with query tokens
/// allowed, extraction must first rule out a second token.
fn cached_header_token(
    cache: &mut TokenCache,
    verifier: &Verifier,
    allow_query_token: bool,
    req: &RequestView<'_>,
    now: u64,
) -> Option<Rc<Identity>> {
    if allow_query_token {
        return None;
    }
    let token = bearer_candidate(req.authorization?)?;
    if token.len() > verifier.max_token_bytes() {
        return None;
    }
    let hash = cache.hash(token);
    cache.get(&hash, now)
}

/// Lets a request through with the identity its token gave, if the rule's scopes are there. The
/// token is stripped from where it was (the header, or the query when `from_query`) unless the
/// config forwards it.
fn allow(
    requirement: &Requirement,
    identity: Rc<Identity>,
    from_query: bool,
    req: &RequestView<'_>,
    forward: bool,
) -> Outcome {
    if let Requirement::Scopes(required) = requirement
        && !identity.has_scopes(required)
    {
        return Outcome::Deny(Denial::InsufficientScope(required.clone()));
    }
    Outcome::Allow(Allow {
        anonymous: false,
        identity: Some(identity),
        remove_authorization: !forward && !from_query,
        new_path: (!forward && from_query).then(|| strip_query_token(req.info.path)),
    })
}

/// The key set a token is checked against, and whether more keys may come (a remote JWKS).
#[derive(Clone, Copy)]
struct Keys<'a> {
    set: Option<&'a KeySet>,
    remote: bool,
}

/// Whom `token` speaks for: from the cache, or verified in full and then cached. A function of
/// the engine's parts rather than a method, so the matched rule (borrowed from the config) need
/// not be copied on every request.
fn identity(
    cache: &mut TokenCache,
    verifier: &Verifier,
    keys: Keys<'_>,
    token: &str,
    now: u64,
    wait: WaitPolicy,
    metrics: &dyn Metrics,
) -> Result<Rc<Identity>, Outcome> {
    // Oversized tokens are refused before anything, hashing included.
    if token.len() > verifier.max_token_bytes() {
        return Err(Outcome::Deny(Denial::InvalidToken(TokenError::TooLarge)));
    }
    let hash = cache.hash(token.as_bytes());
    if let Some(identity) = cache.get(&hash, now) {
        metrics.count(Metric::CacheHit);
        return Ok(identity);
    }
    metrics.count(Metric::CacheMiss);
    let empty = KeySet::default();
    match verifier.verify(token, keys.set.unwrap_or(&empty), now) {
        Ok(identity) => {
            let identity = Rc::new(identity);
            cache.insert(hash, Rc::clone(&identity), now);
            Ok(identity)
        }
        // No key set yet: a token that needs a key waits for the first fetch or gets 503;
        // it is never let through unverified.
        Err(TokenError::UnknownKid(_) | TokenError::NoKeyForToken) if keys.set.is_none() => {
            if wait.may_wait && keys.remote {
                Err(Outcome::NeedKeys(Wait::NoKeys))
            } else {
                Err(Outcome::Deny(Denial::KeysUnavailable {
                    retry_after_seconds: wait.retry_after_seconds,
                }))
            }
        }
        Err(TokenError::UnknownKid(_)) if wait.may_wait && keys.remote => {
            Err(Outcome::NeedKeys(Wait::UnknownKid))
        }
        Err(e) => Err(Outcome::Deny(Denial::InvalidToken(e))),
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
