//! Verified-token cache, one per VM: a signature check costs far more than a whole proxied request
//! in V8 wasm, and clients send the same token many times.
//!
//! Keyed by a keyed hash of the token (the token itself is never kept), bounded, each entry valid
//! at most until the token's `exp`. Only successes are cached: a refused token is checked again,
//! so a key that appears later (rotation) is honoured at once.
//!
//! The hash is SipHash-1-3 with a 128-bit output under a secret key drawn once per VM. SipHash is
//! a pseudorandom function: without the key, a client cannot make another token hash to a cached
//! one other than by guessing 128 bits. It runs on every request, over the whole token: for a
//! 326-byte token SipHash-2-4 took 4.3K wasm operators where the unkeyed BLAKE3 digest used
//! before took 11.0K, and SipHash-1-3 (one round per 8 bytes instead of two, three per half of
//! the output at the end instead of four) runs two thirds of SipHash-2-4's instructions
//! (bench/NOTEBOOK.md, "The token cache's hash with fewer rounds"). BLAKE3 needs no secret because
//! it resists collisions by itself, and pays for that in rounds; the cache needs less, since no
//! one outside the VM ever sees its keys.
//!
//! Why 1-3 is enough here: the hashes never leave the VM, so a client learns nothing about one
//! but whether a token it sent was let through. A forged token gets through only if it collides
//! with a cached one in all 128 bits under a key it never sees. That is the setting of a hash
//! table keyed against flooding (Rust's `HashMap` uses SipHash-1-3 for it, as does rate-limit
//! here), with the bar far higher: a flood needs a few bits of the hash to collide, a forgery
//! all 128. SipHash-2-4's extra rounds are a margin for MACs whose tags an attacker sees.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::verify::Identity;

pub type TokenHash = [u8; 16];

/// The secret key of one cache's hash.
#[derive(Clone, Copy)]
pub struct CacheKey([u8; 16]);

impl CacheKey {
    /// A key from the host's randomness (WASI `random_get`, which every proxy-wasm host provides:
    /// Rust's own `HashMap` needs it too).
    pub fn random() -> Result<Self, String> {
        let mut key = [0u8; 16];
        getrandom::getrandom(&mut key).map_err(|e| e.to_string())?;
        Ok(Self(key))
    }

    /// A fixed key, for tests.
    pub const fn from_bytes(key: [u8; 16]) -> Self {
        Self(key)
    }

    /// Bytes, not text: a token seen before is looked up before it is checked again
    /// (`Engine::decide`).
    pub fn hash(&self, token: &[u8]) -> TokenHash {
        let mut hasher = SipHasher13::new_with_key(&self.0);
        hasher.write(token);
        hasher.finish128().as_bytes()
    }
}

/// The map's own hash of a key: its first eight bytes. The key is already a keyed hash, uniform
/// and beyond a client's choosing, so hashing it again (std's SipHash, on every request) would
/// buy nothing.
#[derive(Default)]
struct DigestPrefix(u64);

impl Hasher for DigestPrefix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(prefix) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*prefix);
        }
    }

    /// A `[u8; 16]` key is hashed as its length, then its bytes: the length is the same for all.
    fn write_usize(&mut self, _length: usize) {}
}

pub struct TokenCache {
    key: CacheKey,
    capacity: usize,
    /// Shared with the requests that use an entry, so a hit copies nothing.
    entries: HashMap<TokenHash, Rc<Identity>, BuildHasherDefault<DigestPrefix>>,
    /// Insertion order, for evicting the oldest entry when full.
    order: VecDeque<TokenHash>,
}

impl TokenCache {
    pub fn new(capacity: usize, key: CacheKey) -> Self {
        Self {
            key,
            capacity,
            entries: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// The key `get` and `insert` take for `token`.
    pub fn hash(&self, token: &[u8]) -> TokenHash {
        self.key.hash(token)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity for this token if it was verified before and has not expired (`now` in
    /// seconds). An expired entry is dropped, so the token goes through full verification, which
    /// applies the clock skew.
    pub fn get(&mut self, hash: &TokenHash, now: u64) -> Option<Rc<Identity>> {
        let expired = self.entries.get(hash).is_some_and(|id| now > id.expires_at);
        if expired {
            self.entries.remove(hash);
            return None;
        }
        self.entries.get(hash).cloned()
    }

    pub fn insert(&mut self, hash: TokenHash, identity: Rc<Identity>, now: u64) {
        if self.capacity == 0 || now > identity.expires_at {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&hash) {
            self.evict(now);
        }
        if self.entries.insert(hash, identity).is_none() {
            self.order.push_back(hash);
        }
    }

    /// Forget everything: called when the key set changes, so a key withdrawn from the JWKS stops
    /// vouching for tokens at once.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn evict(&mut self, now: u64) {
        // Expired entries first; then the oldest. `order` may hold hashes already removed
        // (expired on lookup): they are skipped.
        self.entries.retain(|_, id| now <= id.expires_at);
        self.order.retain(|h| self.entries.contains_key(h));
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> TokenCache {
        TokenCache::new(capacity, CacheKey::from_bytes([7; 16]))
    }

    fn hash_token(token: &str) -> TokenHash {
        CacheKey::from_bytes([7; 16]).hash(token.as_bytes())
    }

    fn id(exp: u64) -> Rc<Identity> {
        Rc::new(Identity {
            subject: Some("bob".into()),
            client_id: None,
            scopes: vec![],
            scope: String::new(),
            extra_headers: vec![],
            expires_at: exp,
        })
    }

    #[test]
    fn entries_live_until_exp_only() {
        let mut c = cache(4);
        let h = hash_token("t");
        c.insert(h, id(100), 50);
        assert!(c.get(&h, 100).is_some());
        assert!(c.get(&h, 101).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn capacity_is_a_hard_bound_oldest_goes_first() {
        let mut c = cache(3);
        for i in 0..10u8 {
            c.insert(hash_token(&i.to_string()), id(1000), 0);
            assert!(c.len() <= 3);
        }
        assert!(c.get(&hash_token("9"), 0).is_some());
        assert!(c.get(&hash_token("0"), 0).is_none());
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let mut c = cache(2);
        c.insert(hash_token("old"), id(10), 0);
        c.insert(hash_token("live"), id(1000), 0);
        c.insert(hash_token("new"), id(1000), 20);
        assert!(c.get(&hash_token("live"), 20).is_some());
        assert!(c.get(&hash_token("new"), 20).is_some());
    }

    #[test]
    fn zero_capacity_disables_and_clear_empties() {
        let mut c = cache(0);
        c.insert(hash_token("t"), id(10), 0);
        assert!(c.is_empty());
        let mut c = cache(2);
        c.insert(hash_token("t"), id(10), 0);
        c.clear();
        assert!(c.get(&hash_token("t"), 0).is_none());
    }

    #[test]
    fn the_key_is_a_keyed_hash_not_the_token() {
        assert_ne!(hash_token("a.b.c"), hash_token("a.b.d"));
        assert_eq!(cache(1).hash(b"a.b.c"), hash_token("a.b.c"));
        // Another key, another hash: without the VM's key a client cannot aim at an entry.
        let other = CacheKey::from_bytes([8; 16]);
        assert_ne!(other.hash(b"a.b.c"), hash_token("a.b.c"));
        let (a, b) = (CacheKey::random().unwrap(), CacheKey::random().unwrap());
        assert_ne!(a.hash(b"a.b.c"), b.hash(b"a.b.c"));
    }
}
