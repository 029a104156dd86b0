//! The shared-data store the buckets live in, as a small trait so the CAS logic runs on the host
//! in tests; the adapter implements it with proxy-wasm shared data.

use std::collections::HashMap;
use std::sync::Mutex;

/// Why a `set` did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// The value changed since it was read (its CAS moved on): read again and retry.
    CasMismatch,
    /// Anything else the host reported; not worth retrying.
    Other(String),
}

/// Proxy-wasm shared data, as Envoy implements it:
/// - `get` returns the value and its CAS, or `None` if the key was never set;
/// - `set` with CAS 0 writes unconditionally; with any other CAS it writes only if that is the
///   key's current CAS — except that a set on a missing key always succeeds, whatever the CAS;
/// - every successful write gives the key a new CAS;
/// - keys can never be deleted (ABI 0.2.1).
pub trait SharedStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String>;
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError>;
}

/// An in-memory store with exactly the semantics above, for tests (single- and multi-threaded).
/// CAS values come from one counter for all keys, as in Envoy.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    data: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the CAS counter at `next`, to test behaviour around its wrap-around.
    pub fn with_next_cas(next: u32) -> Self {
        let store = Self::default();
        if let Ok(mut inner) = store.inner.lock() {
            inner.next_cas = next;
        }
        store
    }

    /// Number of keys and total bytes of keys plus values: what the host must keep.
    pub fn footprint(&self) -> (usize, usize) {
        self.inner.lock().map_or((0, 0), |inner| {
            let bytes = inner.data.iter().map(|(k, (v, _))| k.len() + v.len()).sum();
            (inner.data.len(), bytes)
        })
    }
}

impl MemoryInner {
    /// Envoy's counter: skips 0, which means "no CAS", and wraps.
    fn bump(&mut self) -> u32 {
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1);
        cas
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        let inner = self.inner.lock().map_err(|e| e.to_string())?;
        Ok(inner.data.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|e| SetError::Other(e.to_string()))?;
        if let Some((_, current)) = inner.data.get(key)
            && cas != 0
            && cas != *current
        {
            return Err(SetError::CasMismatch);
        }
        let new_cas = inner.bump();
        inner.data.insert(key.to_owned(), (value.to_vec(), new_cas));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_on_a_missing_key_succeeds_whatever_the_cas() {
        let s = MemoryStore::new();
        assert_eq!(s.set("k", b"a", 12345), Ok(()));
        assert_eq!(s.get("k").unwrap().map(|(v, _)| v), Some(b"a".to_vec()));
    }

    #[test]
    fn every_write_bumps_the_cas_and_a_stale_cas_is_refused() {
        let s = MemoryStore::new();
        s.set("k", b"a", 0).unwrap();
        let (_, c1) = s.get("k").unwrap().unwrap();
        s.set("k", b"b", c1).unwrap();
        let (_, c2) = s.get("k").unwrap().unwrap();
        assert_ne!(c1, c2);
        assert_eq!(s.set("k", b"c", c1), Err(SetError::CasMismatch));
        assert_eq!(s.set("k", b"d", 0), Ok(()), "CAS 0 is unconditional");
    }

    #[test]
    fn the_counter_skips_zero_when_it_wraps() {
        let s = MemoryStore::with_next_cas(u32::MAX);
        s.set("a", b"", 0).unwrap();
        s.set("b", b"", 0).unwrap();
        assert_eq!(s.get("a").unwrap().map(|(_, c)| c), Some(u32::MAX));
        assert_eq!(s.get("b").unwrap().map(|(_, c)| c), Some(1));
    }
}
