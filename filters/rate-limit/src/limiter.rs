//! Taking and returning tokens in shared data: one read, one compare-and-swap write, retried a
//! bounded number of times.
//!
//! Blind writes from several workers lose updates (the real limit lands anywhere between
//! limit/workers and limit × workers); the CAS makes every token taken exactly once.

use crate::bucket::{Bucket, Rate};
use crate::store::{SetError, SharedStore};
use crate::table::{Group, Placement, SlotRef};

/// The CAS we write with when the group key does not exist yet. Envoy lets a set on a missing key
/// succeed whatever the CAS, but with CAS 0 a second creator would also overwrite the first
/// one's write unconditionally (a lost update). With a non-zero CAS the second creator gets
/// `CasMismatch` instead and retries on the stored value — unless that value's CAS happens to be
/// exactly this one, which takes the shared 32-bit counter landing on it at that very moment.
pub const CREATE_CAS: u32 = u32::MAX;

/// A bucket's state after an operation, for headers and decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub remaining: u64,
    pub ns_until_token: Option<u64>,
    pub ns_until_full: Option<u64>,
}

impl Snapshot {
    fn of(bucket: &Bucket, rate: &Rate) -> Self {
        Self {
            remaining: bucket.remaining(rate),
            ns_until_token: bucket.ns_until_token(rate),
            ns_until_full: bucket.ns_until_full(rate),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A token was taken; the snapshot is after taking it.
    Taken(Snapshot),
    /// No token: nothing was written.
    Empty(Snapshot),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterError {
    /// Every attempt lost the race to another worker.
    RetriesExhausted,
    /// The host refused the read or the write.
    Store(String),
}

/// What an operation cost, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effort {
    /// Writes refused with `CasMismatch` and retried.
    pub cas_retries: u32,
    /// Partly spent buckets dropped to make room.
    pub evictions: u32,
}

/// Reads the group: its value (or an empty group) and the CAS to write back with.
fn load(store: &dyn SharedStore, slot: &SlotRef) -> Result<(Group, u32), LimiterError> {
    match store.get(&slot.group_key).map_err(LimiterError::Store)? {
        // A value in another format is overwritten (with its CAS, so still race-free).
        Some((bytes, cas)) => Ok((Group::decode(&bytes).unwrap_or_default(), cas)),
        None => Ok((Group::default(), CREATE_CAS)),
    }
}

/// Reads the bucket without changing it.
pub fn peek(
    store: &dyn SharedStore,
    slot: &SlotRef,
    rate: &Rate,
    now: u64,
) -> Result<Snapshot, LimiterError> {
    let (group, _) = load(store, slot)?;
    let mut bucket = group.bucket(slot.fingerprint, rate, now);
    bucket.refill(rate, now);
    Ok(Snapshot::of(&bucket, rate))
}

/// Applies `op` to the key's bucket (refilled to `now`) and writes the group back with its CAS,
/// retrying on `CasMismatch` at most `max_retries` times. `op` returns whether to write.
fn update<T>(
    store: &dyn SharedStore,
    slot: &SlotRef,
    rate: &Rate,
    now: u64,
    max_retries: u32,
    effort: &mut Effort,
    mut op: impl FnMut(&mut Bucket) -> (bool, T),
) -> Result<T, LimiterError> {
    let mut attempt = 0u32;
    loop {
        let (mut group, cas) = load(store, slot)?;
        let mut bucket = group.bucket(slot.fingerprint, rate, now);
        bucket.refill(rate, now);
        let (write, result) = op(&mut bucket);
        if !write {
            return Ok(result);
        }
        let placement = group.store(slot.fingerprint, &bucket, rate, now);
        match store.set(&slot.group_key, group.encode(), cas) {
            Ok(()) => {
                if placement == Placement::Evicted {
                    effort.evictions = effort.evictions.saturating_add(1);
                }
                return Ok(result);
            }
            Err(SetError::CasMismatch) => {
                if attempt >= max_retries {
                    return Err(LimiterError::RetriesExhausted);
                }
                attempt += 1;
                effort.cas_retries = effort.cas_retries.saturating_add(1);
            }
            Err(SetError::Other(reason)) => return Err(LimiterError::Store(reason)),
        }
    }
}

/// Takes one token from the key's bucket if it has one.
pub fn take(
    store: &dyn SharedStore,
    slot: &SlotRef,
    rate: &Rate,
    now: u64,
    max_retries: u32,
    effort: &mut Effort,
) -> Result<Outcome, LimiterError> {
    update(store, slot, rate, now, max_retries, effort, |bucket| {
        if bucket.try_take(rate) {
            (true, Outcome::Taken(Snapshot::of(bucket, rate)))
        } else {
            (false, Outcome::Empty(Snapshot::of(bucket, rate)))
        }
    })
}

/// Returns one token taken for a request that another policy then denied.
pub fn give_back(
    store: &dyn SharedStore,
    slot: &SlotRef,
    rate: &Rate,
    now: u64,
    max_retries: u32,
    effort: &mut Effort,
) -> Result<(), LimiterError> {
    update(store, slot, rate, now, max_retries, effort, |bucket| {
        bucket.give_back(rate);
        (true, ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::cell::Cell;
    use std::sync::Arc;

    const SEC: u64 = 1_000_000_000;

    fn slot(fp: u64) -> SlotRef {
        SlotRef {
            group_key: "g".into(),
            fingerprint: fp,
        }
    }

    fn rate(limit: u64) -> Rate {
        Rate {
            limit,
            interval_ns: 3600 * SEC,
            burst: limit,
        }
    }

    fn taken(outcome: &Result<Outcome, LimiterError>) -> bool {
        matches!(outcome, Ok(Outcome::Taken(_)))
    }

    #[test]
    fn takes_exactly_the_burst_then_reports_empty() {
        let store = MemoryStore::new();
        let mut effort = Effort::default();
        let r = rate(5);
        let results: Vec<_> = (0..7)
            .map(|_| take(&store, &slot(1), &r, 0, 8, &mut effort))
            .collect();
        assert_eq!(results.iter().filter(|o| taken(o)).count(), 5);
        assert_eq!(
            results.last(),
            Some(&Ok(Outcome::Empty(Snapshot {
                remaining: 0,
                ns_until_token: Some(720 * SEC),
                ns_until_full: Some(3600 * SEC),
            })))
        );
        assert_eq!(effort, Effort::default());
    }

    #[test]
    fn give_back_restores_a_token() {
        let store = MemoryStore::new();
        let mut effort = Effort::default();
        let r = rate(1);
        assert!(taken(&take(&store, &slot(1), &r, 0, 8, &mut effort)));
        assert_eq!(peek(&store, &slot(1), &r, 0).map(|s| s.remaining), Ok(0));
        give_back(&store, &slot(1), &r, 0, 8, &mut effort).unwrap();
        assert_eq!(peek(&store, &slot(1), &r, 0).map(|s| s.remaining), Ok(1));
    }

    /// A store that lets a rival write happen between our read and our write, `rivals` times.
    struct RacingStore {
        inner: MemoryStore,
        rivals: Cell<u32>,
        rival: Box<dyn Fn(&MemoryStore)>,
    }

    impl SharedStore for RacingStore {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
            if self.rivals.get() > 0 {
                self.rivals.set(self.rivals.get() - 1);
                (self.rival)(&self.inner);
            }
            self.inner.set(key, value, cas)
        }
    }

    fn rival_takes_a_token() -> Box<dyn Fn(&MemoryStore)> {
        Box::new(|store: &MemoryStore| {
            let mut e = Effort::default();
            assert!(taken(&take(store, &slot(1), &rate(10), 0, 8, &mut e)));
        })
    }

    #[test]
    fn a_lost_race_is_retried_and_no_update_is_lost() {
        let store = RacingStore {
            inner: MemoryStore::new(),
            rivals: Cell::new(3),
            rival: rival_takes_a_token(),
        };
        // Create the group first so the race is on an existing key.
        store.inner.set("g", Group::default().encode(), 0).unwrap();
        let mut effort = Effort::default();
        let out = take(&store, &slot(1), &rate(10), 0, 8, &mut effort);
        assert!(taken(&out));
        assert_eq!(effort.cas_retries, 3);
        // Three rival tokens plus ours: all four counted.
        assert_eq!(
            peek(&store.inner, &slot(1), &rate(10), 0).map(|s| s.remaining),
            Ok(6)
        );
    }

    #[test]
    fn racing_creators_of_a_missing_key_do_not_overwrite_each_other() {
        // Both workers read "no such key"; the rival creates it first. With CAS 0 our write would
        // silently replace the rival's and its token would be handed out again.
        let store = RacingStore {
            inner: MemoryStore::new(),
            rivals: Cell::new(1),
            rival: rival_takes_a_token(),
        };
        let mut effort = Effort::default();
        assert!(taken(&take(&store, &slot(1), &rate(10), 0, 8, &mut effort)));
        assert_eq!(effort.cas_retries, 1);
        assert_eq!(
            peek(&store.inner, &slot(1), &rate(10), 0).map(|s| s.remaining),
            Ok(8)
        );
    }

    #[test]
    fn retries_are_bounded() {
        // A rival that always wins: it writes another key's bucket in the same group before each
        // of our writes, so our CAS is always stale.
        let store = RacingStore {
            inner: MemoryStore::new(),
            rivals: Cell::new(u32::MAX),
            rival: Box::new(|s: &MemoryStore| {
                let mut e = Effort::default();
                assert!(taken(&take(s, &slot(2), &rate(1_000_000), 0, 8, &mut e)));
            }),
        };
        let mut effort = Effort::default();
        let out = take(&store, &slot(1), &rate(10), 0, 4, &mut effort);
        assert_eq!(out, Err(LimiterError::RetriesExhausted));
        assert_eq!(effort.cas_retries, 4);
        assert_eq!(
            peek(&store.inner, &slot(1), &rate(10), 0).map(|s| s.remaining),
            Ok(10),
            "nothing taken for us"
        );
    }

    #[test]
    fn host_errors_are_reported_not_retried() {
        struct Broken;
        impl SharedStore for Broken {
            fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
                Ok(None)
            }
            fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), SetError> {
                Err(SetError::Other("bad argument".into()))
            }
        }
        let mut effort = Effort::default();
        assert_eq!(
            take(&Broken, &slot(1), &rate(10), 0, 8, &mut effort),
            Err(LimiterError::Store("bad argument".into()))
        );
    }

    #[test]
    fn garbage_in_shared_data_is_replaced_not_trusted() {
        let store = MemoryStore::new();
        store.set("g", b"not a group", 0).unwrap();
        let mut effort = Effort::default();
        assert!(taken(&take(&store, &slot(1), &rate(3), 0, 8, &mut effort)));
        assert_eq!(
            peek(&store, &slot(1), &rate(3), 0).map(|s| s.remaining),
            Ok(2)
        );
    }

    /// Envoy's workers each run their own VM on their own thread against one shared store. With
    /// every write a CAS, exactly `limit` requests pass however the threads interleave.
    #[test]
    fn threads_contending_for_one_key_take_exactly_the_limit() {
        for round in 0..5 {
            let store = Arc::new(MemoryStore::new());
            let r = rate(1_000);
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let store = Arc::clone(&store);
                    std::thread::spawn(move || {
                        let mut passed = 0u32;
                        let mut effort = Effort::default();
                        for _ in 0..400 {
                            match take(&*store, &slot(9), &r, 0, 1_000, &mut effort) {
                                Ok(Outcome::Taken(_)) => passed += 1,
                                Ok(Outcome::Empty(_)) => {}
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        (passed, effort.cas_retries)
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let passed: u32 = results.iter().map(|(p, _)| p).sum();
            assert_eq!(passed, 1_000, "round {round}: 3,200 attempts, limit 1,000");
        }
    }
}
