//! Shared data with Envoy's semantics, shared by every VM of one [`crate::Host`] and safe to use
//! from many OS threads at once (as Envoy's worker threads do).
//!
//! Envoy's rules, which filters' retry loops depend on:
//! - a get of a missing key is `NotFound`;
//! - a set with cas 0 always succeeds; a set on a missing key succeeds whatever the cas;
//! - a set with a non-zero cas on an existing key succeeds only if the cas matches, else
//!   `CasMismatch`;
//! - every successful set gives the entry a new cas, never 0.
//!
//! [`CasRules::NgxWasm`] switches to the rule of Kong's ngx_wasm_module (its shm key/value
//! store): a set succeeds only if its cas equals the key's current cas, 0 for a missing key. So
//! cas 0 creates a missing key and is refused on an existing one; there is no unconditional
//! write. Filters meant for both hosts are tested under both.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Stored,
    CasMismatch,
}

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

/// Whose rules a set on a missing key follows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CasRules {
    /// A missing key takes any cas.
    #[default]
    Envoy,
    /// The cas must equal the current one, 0 for a missing key.
    NgxWasm,
}

/// The key/value store behind `proxy_get_shared_data` / `proxy_set_shared_data`.
#[derive(Debug, Default)]
pub struct SharedData {
    store: Mutex<Store>,
    cas_mismatches: AtomicU64,
    writes: AtomicU64,
    yield_after_read: AtomicBool,
    exact_cas: AtomicBool,
}

impl SharedData {
    /// The value and cas under `key`.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let found = lock(&self.store).entries.get(key).cloned();
        if self.yield_after_read.load(Ordering::Relaxed) {
            // Widens the window between a filter's read and its write so that VMs on other
            // threads really do race, as a preempted Envoy worker would.
            std::thread::yield_now();
        }
        found
    }

    /// Writes `value` under `key` if `cas` allows it (see the module docs).
    pub fn set(&self, key: &str, value: Vec<u8>, cas: u32) -> SetOutcome {
        let mut store = lock(&self.store);
        let current = store.entries.get(key).map(|(_, c)| *c);
        let refused = if self.exact_cas.load(Ordering::Relaxed) {
            cas != current.unwrap_or(0)
        } else {
            current.is_some_and(|current| cas != 0 && cas != current)
        };
        if refused {
            drop(store);
            self.cas_mismatches.fetch_add(1, Ordering::Relaxed);
            return SetOutcome::CasMismatch;
        }
        // Skip 0: it means "no cas" on the wire.
        store.next_cas = store.next_cas.wrapping_add(1).max(1);
        let new_cas = store.next_cas;
        store.entries.insert(key.to_owned(), (value, new_cas));
        drop(store);
        self.writes.fetch_add(1, Ordering::Relaxed);
        SetOutcome::Stored
    }

    /// How many writes were refused with `CasMismatch` so far: proof that contention happened.
    pub fn cas_mismatches(&self) -> u64 {
        self.cas_mismatches.load(Ordering::Relaxed)
    }

    /// How many writes succeeded so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_cas_rules(&self, rules: CasRules) {
        self.exact_cas
            .store(rules == CasRules::NgxWasm, Ordering::Relaxed);
    }

    /// Makes every read yield the OS thread before returning (see [`crate::Host::set_contention`]).
    pub(crate) fn set_yield_after_read(&self, on: bool) {
        self.yield_after_read.store(on, Ordering::Relaxed);
    }
}

/// Shared queues (`proxy_register_shared_queue` and friends): named FIFO queues of byte strings.
#[derive(Debug, Default)]
pub(crate) struct SharedQueues {
    inner: Mutex<Queues>,
}

#[derive(Debug, Default)]
struct Queues {
    by_name: HashMap<String, u32>,
    queues: HashMap<u32, Queue>,
    next_id: u32,
}

#[derive(Debug)]
struct Queue {
    owner_vm: u32,
    owner_context: u32,
    items: VecDeque<Vec<u8>>,
    ready_pending: bool,
}

impl SharedQueues {
    pub(crate) fn register(&self, name: &str, owner_vm: u32, owner_context: u32) -> u32 {
        let mut q = lock(&self.inner);
        if let Some(id) = q.by_name.get(name).copied() {
            if let Some(queue) = q.queues.get_mut(&id) {
                queue.owner_vm = owner_vm;
                queue.owner_context = owner_context;
            }
            return id;
        }
        q.next_id = q.next_id.wrapping_add(1).max(1);
        let id = q.next_id;
        q.by_name.insert(name.to_owned(), id);
        q.queues.insert(
            id,
            Queue {
                owner_vm,
                owner_context,
                items: VecDeque::new(),
                ready_pending: false,
            },
        );
        id
    }

    pub(crate) fn resolve(&self, name: &str) -> Option<u32> {
        lock(&self.inner).by_name.get(name).copied()
    }

    pub(crate) fn enqueue(&self, id: u32, item: Vec<u8>) -> bool {
        let mut q = lock(&self.inner);
        match q.queues.get_mut(&id) {
            Some(queue) => {
                queue.items.push_back(item);
                queue.ready_pending = true;
                true
            }
            None => false,
        }
    }

    /// `None` if the queue does not exist, `Some(None)` if it is empty.
    pub(crate) fn dequeue(&self, id: u32) -> Option<Option<Vec<u8>>> {
        let mut q = lock(&self.inner);
        q.queues.get_mut(&id).map(|queue| queue.items.pop_front())
    }

    /// Queues owned by `vm` that received items since the last call: (queue id, owner context).
    pub(crate) fn take_ready(&self, vm: u32) -> Vec<(u32, u32)> {
        let mut q = lock(&self.inner);
        let mut ready: Vec<(u32, u32)> = q
            .queues
            .iter_mut()
            .filter(|(_, queue)| queue.owner_vm == vm && queue.ready_pending)
            .map(|(id, queue)| {
                queue.ready_pending = false;
                (*id, queue.owner_context)
            })
            .collect();
        ready.sort_unstable();
        ready
    }
}

/// Locks a mutex, recovering from poisoning: a test thread that panicked while holding it must
/// not turn every later assertion into a confusing second panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_cas_rules() {
        let data = SharedData::default();
        assert_eq!(data.get("k"), None);
        // A set on a missing key succeeds whatever the cas.
        assert_eq!(data.set("k", b"1".to_vec(), 12345), SetOutcome::Stored);
        let (value, cas1) = data.get("k").unwrap();
        assert_eq!(value, b"1");
        assert_ne!(cas1, 0);
        // The right cas wins and bumps the cas.
        assert_eq!(data.set("k", b"2".to_vec(), cas1), SetOutcome::Stored);
        let (_, cas2) = data.get("k").unwrap();
        assert_ne!(cas2, cas1);
        // A stale cas loses and leaves the value alone.
        assert_eq!(data.set("k", b"3".to_vec(), cas1), SetOutcome::CasMismatch);
        assert_eq!(data.get("k").unwrap().0, b"2");
        // cas 0 is an unconditional write.
        assert_eq!(data.set("k", b"4".to_vec(), 0), SetOutcome::Stored);
        assert_eq!(data.get("k").unwrap().0, b"4");
        assert_eq!(data.cas_mismatches(), 1);
        assert_eq!(data.writes(), 3);
    }

    #[test]
    fn ngx_wasm_module_cas_rules() {
        let data = SharedData::default();
        data.set_cas_rules(CasRules::NgxWasm);
        // A missing key is created only with cas 0.
        assert_eq!(data.set("k", b"1".to_vec(), 12345), SetOutcome::CasMismatch);
        assert_eq!(data.get("k"), None);
        assert_eq!(data.set("k", b"1".to_vec(), 0), SetOutcome::Stored);
        let (_, cas1) = data.get("k").unwrap();
        // cas 0 never overwrites; only the exact current cas does.
        assert_eq!(data.set("k", b"2".to_vec(), 0), SetOutcome::CasMismatch);
        assert_eq!(data.set("k", b"2".to_vec(), cas1), SetOutcome::Stored);
        assert_eq!(data.set("k", b"3".to_vec(), cas1), SetOutcome::CasMismatch);
        assert_eq!(data.get("k").unwrap().0, b"2");
        assert_eq!(data.cas_mismatches(), 3);
    }

    #[test]
    fn queues_are_fifo_and_report_readiness_once() {
        let queues = SharedQueues::default();
        let id = queues.register("q", 7, 1);
        assert_eq!(queues.register("q", 7, 1), id);
        assert_eq!(queues.resolve("q"), Some(id));
        assert_eq!(queues.resolve("other"), None);
        assert!(queues.enqueue(id, b"a".to_vec()));
        assert!(queues.enqueue(id, b"b".to_vec()));
        assert_eq!(queues.take_ready(7), vec![(id, 1)]);
        assert_eq!(queues.take_ready(7), vec![]);
        assert_eq!(queues.dequeue(id), Some(Some(b"a".to_vec())));
        assert_eq!(queues.dequeue(id), Some(Some(b"b".to_vec())));
        assert_eq!(queues.dequeue(id), Some(None));
        assert_eq!(queues.dequeue(id + 1), None);
    }
}
