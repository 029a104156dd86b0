//! The JWKS kept in shared data, one copy for all worker VMs, and who may refresh it when.
//!
//! Two shared-data entries per key source: `<prefix>.jwks` holds the last good JWKS document,
//! `<prefix>.state` a small JSON record (`RefreshState`). `on_tick` fires in every worker's VM,
//! so a refresher first takes a lease in the state record with a compare-and-swap: only the VM
//! whose write wins fetches. The record also carries the schedule: periodic refresh, a retry delay
//! after a failure, and at most one unknown-`kid` refetch per configured interval, so tokens with
//! random kids cannot cause a fetch storm.

use serde::{Deserialize, Serialize};

use crate::config::RemoteJwks;

/// The host's shared key-value store (proxy-wasm `get/set_shared_data`), behind a trait so the
/// schedule and lease logic run in host tests.
pub trait SharedStore {
    /// The value and its CAS token, or `None` when the key does not exist.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value`; with `cas`, only if the entry is still at that version.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    CasMismatch,
    Other,
}

/// What every VM can see of the refresher's work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshState {
    /// Bumped each time a new good JWKS is stored; 0 means no keys yet.
    pub generation: u64,
    pub fetched_at_ms: u64,
    /// Completed fetch attempts, good or bad: a paused request waits for this to move.
    pub attempts: u64,
    pub last_failure_ms: u64,
    pub last_unknown_kid_fetch_ms: u64,
    /// A refresher holds the lease until this time (0: free). It expires on its own so a VM that
    /// died mid-fetch cannot block refreshes forever.
    pub lease_until_ms: u64,
    pub lease_owner: u64,
}

/// Why a fetch is wanted; each has its own pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Scheduled refresh (and the first fetch, when there are no keys yet).
    Periodic,
    /// A token named a `kid` we do not have.
    UnknownKid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// This VM holds the lease and must fetch, then call `complete_*`.
    Acquired,
    /// Another VM is fetching right now.
    Busy,
    /// Not due yet (or rate-limited); nothing will be fetched for this reason.
    NotDue,
    /// The shared store refused (should not happen).
    Failed,
}

/// Shared-data bookkeeping for one key source.
pub struct Refresher {
    state_key: String,
    jwks_key: String,
    cfg: RemoteJwks,
    /// Identifies this VM as lease holder (any value unique enough among live VMs).
    me: u64,
}

/// Lease time beyond the callout timeout, so a slow response cannot overlap a second fetch.
const LEASE_MARGIN_MS: u64 = 1_000;
/// CAS used to create the record when it does not exist yet: the host applies any write to an
/// absent key, but if another VM created it meanwhile, this (practically never current) CAS makes
/// our write fail instead of overwriting theirs.
const CREATE_CAS: u32 = u32::MAX;
/// CAS retries before giving up for this tick; contention means another VM is making progress.
const CAS_ATTEMPTS: usize = 4;

impl Refresher {
    pub fn new(cfg: &RemoteJwks, me: u64) -> Self {
        // One namespace per key source, so two filter configs with different JWKS never mix.
        let prefix = format!(
            "wasmgate.bearer-auth|{}|{}|{}",
            cfg.cluster, cfg.authority, cfg.path
        );
        Self {
            state_key: format!("{prefix}.state"),
            jwks_key: format!("{prefix}.jwks"),
            cfg: cfg.clone(),
            me,
        }
    }

    pub fn config(&self) -> &RemoteJwks {
        &self.cfg
    }

    /// The current record (default when absent or unreadable) and its CAS token.
    pub fn read(&self, store: &dyn SharedStore) -> (RefreshState, Option<u32>) {
        match store.get(&self.state_key) {
            Some((bytes, cas)) => (
                serde_json::from_slice(&bytes).unwrap_or_default(),
                Some(cas),
            ),
            None => (RefreshState::default(), None),
        }
    }

    /// The stored JWKS document (the last good one).
    pub fn document(&self, store: &dyn SharedStore) -> Option<Vec<u8>> {
        store.get(&self.jwks_key).map(|(bytes, _)| bytes)
    }

    /// Creates the state record if it does not exist yet. Called at configure time, well before
    /// any lease is taken, because the host has no "create if absent" operation.
    pub fn ensure_state(&self, store: &dyn SharedStore) {
        if store.get(&self.state_key).is_none() {
            // Losing this race is fine: the other VM wrote the same empty record.
            let _ = self.write(store, &RefreshState::default(), None);
        }
    }

    /// Whether a fetch for `why` would be allowed at `now`, without taking the lease.
    pub fn due(&self, state: &RefreshState, why: Why, now: u64) -> bool {
        let retry_ok = state.last_failure_ms == 0
            || now
                >= state
                    .last_failure_ms
                    .saturating_add(self.cfg.retry_interval_ms);
        match why {
            Why::Periodic if state.generation == 0 => retry_ok,
            Why::Periodic => {
                retry_ok
                    && now
                        >= state
                            .fetched_at_ms
                            .saturating_add(self.cfg.refresh_interval_ms)
            }
            Why::UnknownKid => {
                state.last_unknown_kid_fetch_ms == 0
                    || now
                        >= state
                            .last_unknown_kid_fetch_ms
                            .saturating_add(self.cfg.unknown_kid_min_interval_ms)
            }
        }
    }

    pub fn lease_held(&self, state: &RefreshState, now: u64) -> bool {
        state.lease_until_ms > now
    }

    /// Seconds a client should wait before retrying when there are no keys yet.
    pub fn retry_after_seconds(&self, state: &RefreshState, now: u64) -> u64 {
        let next = if self.lease_held(state, now) {
            state.lease_until_ms
        } else {
            state
                .last_failure_ms
                .saturating_add(self.cfg.retry_interval_ms)
        };
        next.saturating_sub(now).div_ceil(1000).max(1)
    }

    /// Takes the lease if a fetch for `why` is due and nobody else is fetching.
    pub fn try_acquire(&self, store: &dyn SharedStore, why: Why, now: u64) -> Acquire {
        for _ in 0..CAS_ATTEMPTS {
            let (mut state, cas) = self.read(store);
            if self.lease_held(&state, now) {
                return Acquire::Busy;
            }
            if !self.due(&state, why, now) {
                return Acquire::NotDue;
            }
            state.lease_until_ms = now
                .saturating_add(self.cfg.timeout_ms)
                .saturating_add(LEASE_MARGIN_MS);
            state.lease_owner = self.me;
            if why == Why::UnknownKid {
                state.last_unknown_kid_fetch_ms = now;
            }
            match self.write(store, &state, cas) {
                Ok(()) => return Acquire::Acquired,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Other) => return Acquire::Failed,
            }
        }
        Acquire::Busy
    }

    /// Stores a fetched document that parsed into a usable key set, and releases the lease.
    pub fn complete_ok(&self, store: &dyn SharedStore, document: &[u8], now: u64) -> bool {
        // Document first: a VM that sees the new generation must find the new document.
        if store.set(&self.jwks_key, document, None).is_err() {
            self.complete_failed(store, now);
            return false;
        }
        self.update(
            store,
            |s| {
                s.generation = s.generation.saturating_add(1);
                s.fetched_at_ms = now;
                s.last_failure_ms = 0;
            },
            now,
        )
    }

    /// Records a failed fetch (the last good document stays) and releases the lease.
    pub fn complete_failed(&self, store: &dyn SharedStore, now: u64) -> bool {
        self.update(store, |s| s.last_failure_ms = now.max(1), now)
    }

    fn update(
        &self,
        store: &dyn SharedStore,
        change: impl Fn(&mut RefreshState),
        now: u64,
    ) -> bool {
        for _ in 0..CAS_ATTEMPTS {
            let (mut state, cas) = self.read(store);
            change(&mut state);
            state.attempts = state.attempts.saturating_add(1);
            // Release only our own lease; if it expired and someone else took it, theirs stays.
            if state.lease_owner == self.me || state.lease_until_ms <= now {
                state.lease_until_ms = 0;
            }
            match self.write(store, &state, cas) {
                Ok(()) => return true,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Other) => return false,
            }
        }
        false
    }

    fn write(
        &self,
        store: &dyn SharedStore,
        state: &RefreshState,
        cas: Option<u32>,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(state).map_err(|_| StoreError::Other)?;
        store.set(&self.state_key, &bytes, Some(cas.unwrap_or(CREATE_CAS)))
    }
}

#[cfg(test)]
pub mod memory {
    //! An in-memory `SharedStore` with the host's CAS semantics, for tests.
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct MemoryStore {
        pub map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next: RefCell<u32>,
    }

    impl SharedStore for MemoryStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.map.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            let mut map = self.map.borrow_mut();
            if let (Some(cas), Some((_, current))) = (cas, map.get(key))
                && cas != *current
            {
                return Err(StoreError::CasMismatch);
            }
            let mut next = self.next.borrow_mut();
            *next += 1;
            map.insert(key.to_string(), (value.to_vec(), *next));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryStore;
    use super::*;

    fn cfg() -> RemoteJwks {
        RemoteJwks {
            cluster: "authz".into(),
            path: "/.well-known/jwks.json".into(),
            authority: "authz".into(),
            timeout_ms: 2_000,
            refresh_interval_ms: 300_000,
            unknown_kid_min_interval_ms: 30_000,
            retry_interval_ms: 2_000,
            max_wait_ms: 5_000,
        }
    }

    fn pair() -> (MemoryStore, Refresher, Refresher) {
        let store = MemoryStore::default();
        let a = Refresher::new(&cfg(), 1);
        let b = Refresher::new(&cfg(), 2);
        a.ensure_state(&store);
        b.ensure_state(&store);
        (store, a, b)
    }

    #[test]
    fn only_one_vm_gets_the_lease() {
        let (store, a, b) = pair();
        assert_eq!(
            a.try_acquire(&store, Why::Periodic, 1_000),
            Acquire::Acquired
        );
        assert_eq!(b.try_acquire(&store, Why::Periodic, 1_000), Acquire::Busy);
        assert_eq!(b.try_acquire(&store, Why::UnknownKid, 1_500), Acquire::Busy);
        assert!(a.complete_ok(&store, br#"{"keys":[]}"#, 1_200));
        let (s, _) = b.read(&store);
        assert_eq!((s.generation, s.attempts, s.lease_until_ms), (1, 1, 0));
        assert_eq!(b.document(&store).as_deref(), Some(&br#"{"keys":[]}"#[..]));
        // Fresh keys: nothing periodic is due until the interval has passed.
        assert_eq!(b.try_acquire(&store, Why::Periodic, 2_000), Acquire::NotDue);
        assert_eq!(
            b.try_acquire(&store, Why::Periodic, 301_200),
            Acquire::Acquired
        );
    }

    #[test]
    fn a_stale_cas_loses() {
        let (store, a, b) = pair();
        let (_, cas) = a.read(&store);
        assert_eq!(b.try_acquire(&store, Why::Periodic, 0), Acquire::Acquired);
        let state = RefreshState {
            lease_owner: 1,
            lease_until_ms: 99_999,
            ..Default::default()
        };
        assert_eq!(a.write(&store, &state, cas), Err(StoreError::CasMismatch));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let (store, a, b) = pair();
        assert_eq!(
            a.try_acquire(&store, Why::UnknownKid, 10_000),
            Acquire::Acquired
        );
        a.complete_ok(&store, b"{}", 10_100);
        let mut fetches = 0;
        for i in 0..100u64 {
            let vm = if i % 2 == 0 { &a } else { &b };
            if vm.try_acquire(&store, Why::UnknownKid, 10_200 + i * 100) == Acquire::Acquired {
                fetches += 1;
                vm.complete_ok(&store, b"{}", 10_200 + i * 100);
            }
        }
        assert_eq!(
            fetches, 0,
            "within 30 s of the last kid fetch nothing more is fetched"
        );
        assert_eq!(
            b.try_acquire(&store, Why::UnknownKid, 40_000),
            Acquire::Acquired
        );
    }

    #[test]
    fn failure_keeps_the_document_and_delays_the_retry() {
        let (store, a, _) = pair();
        assert_eq!(a.try_acquire(&store, Why::Periodic, 0), Acquire::Acquired);
        a.complete_ok(&store, b"good", 10);
        assert_eq!(
            a.try_acquire(&store, Why::Periodic, 300_010),
            Acquire::Acquired
        );
        a.complete_failed(&store, 300_020);
        assert_eq!(a.document(&store).as_deref(), Some(&b"good"[..]));
        let (s, _) = a.read(&store);
        assert_eq!((s.generation, s.attempts), (1, 2));
        assert_eq!(
            a.try_acquire(&store, Why::Periodic, 301_000),
            Acquire::NotDue
        );
        assert_eq!(
            a.try_acquire(&store, Why::Periodic, 302_020),
            Acquire::Acquired
        );
    }

    #[test]
    fn an_abandoned_lease_expires() {
        let (store, a, b) = pair();
        assert_eq!(a.try_acquire(&store, Why::Periodic, 0), Acquire::Acquired);
        // a's VM died: the lease runs out after timeout + margin.
        assert_eq!(b.try_acquire(&store, Why::Periodic, 2_999), Acquire::Busy);
        assert_eq!(
            b.try_acquire(&store, Why::Periodic, 3_000),
            Acquire::Acquired
        );
        // a's late completion does not release b's lease.
        a.complete_failed(&store, 3_100);
        let (s, _) = b.read(&store);
        assert_eq!(s.lease_owner, 2);
        assert!(s.lease_until_ms > 3_100);
    }

    #[test]
    fn retry_after_counts_whole_seconds() {
        let (_, a, _) = pair();
        let s = RefreshState {
            last_failure_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(a.retry_after_seconds(&s, 1_500), 2);
        assert_eq!(a.retry_after_seconds(&s, 10_000), 1);
    }

    #[test]
    fn two_vms_creating_the_record_at_once_cannot_both_win() {
        // Neither VM ran `ensure_state`: both see no record and race to create it.
        let store = MemoryStore::default();
        let a = Refresher::new(&cfg(), 1);
        let b = Refresher::new(&cfg(), 2);
        let (mut sa, cas_a) = a.read(&store);
        assert_eq!(cas_a, None);
        assert_eq!(b.try_acquire(&store, Why::Periodic, 0), Acquire::Acquired);
        sa.lease_owner = 1;
        sa.lease_until_ms = 9_999;
        // a's create-write must not overwrite b's lease.
        assert_eq!(a.write(&store, &sa, cas_a), Err(StoreError::CasMismatch));
        assert_eq!(a.try_acquire(&store, Why::Periodic, 0), Acquire::Busy);
    }

    #[test]
    fn garbage_state_is_read_as_fresh() {
        let (store, a, _) = pair();
        store.set(&a.state_key, b"\xff not json", None).unwrap();
        assert_eq!(a.read(&store).0, RefreshState::default());
        assert_eq!(a.try_acquire(&store, Why::Periodic, 0), Acquire::Acquired);
    }
}
