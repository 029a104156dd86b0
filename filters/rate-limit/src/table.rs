//! The bounded table of buckets: where a key's bucket lives in shared data, and how one shared-data
//! value (a "group") holds several buckets.
//!
//! Shared data cannot delete keys (ABI 0.2.1), so one key per client would grow without bound.
//! Instead the table has a fixed number of slots, `slots / WAYS` shared-data keys of `WAYS` slots
//! each. A client's key hashes to one group; inside it, the client's bucket is the entry carrying
//! its 64-bit fingerprint. A group is read and written as one value with one CAS, so placing a new
//! bucket, reusing a slot or evicting one is atomic with the token update: two workers can never
//! put the same client in two slots, and a client never spends another client's tokens.
//!
//! A bucket that is full again is the same as a bucket never used, so its slot is free for
//! another key. Only when all `WAYS` buckets of a group are partly spent does a newcomer evict one:
//! the one missing the fewest whole tokens, and among those the one used most recently. Evicting
//! hands that client back its missing tokens (counted as an eviction); the order means that a
//! flood of one-request clients churns among itself, and a client that has spent more than the
//! flood keeps its slot and its exact count.

use crate::bucket::{Bucket, Rate};

/// Slots per group (per shared-data value).
pub const WAYS: usize = 8;
/// Format tag at the start of a group value: a value in another format (an older filter version)
/// is treated as an empty group and overwritten.
const MAGIC: [u8; 4] = *b"RLG1";
const ENTRY_LEN: usize = 8 + 16 + 8 + 8 + 8;
/// Size in bytes of one group value.
pub const GROUP_LEN: usize = MAGIC.len() + WAYS * ENTRY_LEN;

/// Where a key's bucket lives: the shared-data key of its group and its fingerprint there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRef {
    pub group_key: String,
    pub fingerprint: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    /// 0 marks an unused slot; real fingerprints are never 0.
    fingerprint: u64,
    units: u128,
    last_ns: u64,
    /// When the bucket is full again, so any reader can tell whether the slot is reusable without
    /// knowing the owner's policy.
    full_at: u64,
    /// Nanoseconds per token of the owner's policy, to count its missing tokens when choosing
    /// whom to evict (`u64::MAX`: never refills).
    token_ns: u64,
}

impl Entry {
    /// Whole tokens this bucket still misses at `now` (0: full, the slot is free).
    fn missing_tokens(&self, now: u64) -> u64 {
        if self.fingerprint == 0 || self.full_at <= now {
            return 0;
        }
        (self.full_at - now).div_ceil(self.token_ns.max(1))
    }
}

/// One shared-data value: `WAYS` bucket slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    entries: [Entry; WAYS],
}

/// What storing a bucket did to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The key already had a slot here.
    Updated,
    /// The key took an unused or fully refilled slot.
    Claimed,
    /// Every slot held a partly spent bucket; the one nearest to full was dropped.
    Evicted,
}

impl Group {
    /// Decodes a stored group; `None` if it is not in this format (treat it as empty).
    pub fn decode(bytes: &[u8]) -> Option<Group> {
        let body = bytes.strip_prefix(&MAGIC)?;
        if body.len() != WAYS * ENTRY_LEN {
            return None;
        }
        let mut group = Group::default();
        for (entry, chunk) in group.entries.iter_mut().zip(body.chunks_exact(ENTRY_LEN)) {
            let (fp, rest) = chunk.split_at(8);
            let (units, rest) = rest.split_at(16);
            let (last, rest) = rest.split_at(8);
            let (full_at, token_ns) = rest.split_at(8);
            *entry = Entry {
                fingerprint: u64::from_le_bytes(fp.try_into().ok()?),
                units: u128::from_le_bytes(units.try_into().ok()?),
                last_ns: u64::from_le_bytes(last.try_into().ok()?),
                full_at: u64::from_le_bytes(full_at.try_into().ok()?),
                token_ns: u64::from_le_bytes(token_ns.try_into().ok()?),
            };
        }
        Some(group)
    }

    /// The stored form, on the stack: it is written on every request, and its size is fixed.
    pub fn encode(&self) -> [u8; GROUP_LEN] {
        let mut out = [0u8; GROUP_LEN];
        let (magic, body) = out.split_at_mut(MAGIC.len());
        magic.copy_from_slice(&MAGIC);
        for (e, chunk) in self.entries.iter().zip(body.chunks_exact_mut(ENTRY_LEN)) {
            let (fp, rest) = chunk.split_at_mut(8);
            let (units, rest) = rest.split_at_mut(16);
            let (last, rest) = rest.split_at_mut(8);
            let (full_at, token_ns) = rest.split_at_mut(8);
            fp.copy_from_slice(&e.fingerprint.to_le_bytes());
            units.copy_from_slice(&e.units.to_le_bytes());
            last.copy_from_slice(&e.last_ns.to_le_bytes());
            full_at.copy_from_slice(&e.full_at.to_le_bytes());
            token_ns.copy_from_slice(&e.token_ns.to_le_bytes());
        }
        out
    }

    fn position(&self, fingerprint: u64) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.fingerprint == fingerprint && fingerprint != 0)
    }

    /// The key's bucket as stored, or a full one if it has none here (never used, reused or
    /// evicted: all mean "full").
    pub fn bucket(&self, fingerprint: u64, rate: &Rate, now: u64) -> Bucket {
        match self.position(fingerprint).and_then(|i| self.entries.get(i)) {
            Some(e) => Bucket {
                units: e.units,
                last_ns: e.last_ns,
            },
            None => rate.full_bucket(now),
        }
    }

    /// Stores the key's bucket, finding it a slot if it has none.
    pub fn store(&mut self, fingerprint: u64, bucket: &Bucket, rate: &Rate, now: u64) -> Placement {
        let entry = Entry {
            fingerprint,
            units: bucket.units,
            last_ns: bucket.last_ns,
            full_at: bucket.full_at(rate),
            token_ns: rate
                .interval_ns
                .checked_div(rate.limit)
                .unwrap_or(u64::MAX)
                .max(1),
        };
        if let Some(slot) = self
            .position(fingerprint)
            .and_then(|i| self.entries.get_mut(i))
        {
            *slot = entry;
            return Placement::Updated;
        }
        // Unused and refilled slots first (0 missing), then the fewest whole tokens missing, then
        // the most recently used.
        let victim = self
            .entries
            .iter_mut()
            .min_by_key(|e| (e.missing_tokens(now), std::cmp::Reverse(e.last_ns)));
        match victim {
            Some(slot) => {
                let placement = if slot.missing_tokens(now) > 0 {
                    Placement::Evicted
                } else {
                    Placement::Claimed
                };
                *slot = entry;
                placement
            }
            // WAYS > 0, so there is always a victim; claim nothing rather than panic.
            None => Placement::Claimed,
        }
    }

    /// Number of slots holding a bucket that is not yet full at `now`.
    pub fn active(&self, now: u64) -> usize {
        self.entries
            .iter()
            .filter(|e| e.missing_tokens(now) > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const RATE: Rate = Rate {
        limit: 10,
        interval_ns: 10 * SEC,
        burst: 10,
    };

    fn spent(now: u64, tokens_taken: u64) -> Bucket {
        let mut b = RATE.full_bucket(now);
        for _ in 0..tokens_taken {
            assert!(b.try_take(&RATE));
        }
        b
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut g = Group::default();
        g.store(42, &spent(5, 3), &RATE, 5);
        g.store(43, &spent(6, 10), &RATE, 6);
        let bytes = g.encode();
        assert_eq!(bytes.len(), GROUP_LEN);
        assert_eq!(Group::decode(&bytes), Some(g));
    }

    #[test]
    fn values_in_another_format_are_rejected_not_misread() {
        assert_eq!(Group::decode(b""), None);
        assert_eq!(Group::decode(b"RLG1short"), None);
        let mut other = Group::default().encode();
        other[0] = b'X';
        assert_eq!(Group::decode(&other), None);
    }

    #[test]
    fn a_key_keeps_its_slot() {
        let mut g = Group::default();
        assert_eq!(g.store(7, &spent(0, 1), &RATE, 0), Placement::Claimed);
        assert_eq!(g.store(7, &spent(0, 2), &RATE, 0), Placement::Updated);
        assert_eq!(g.bucket(7, &RATE, 0).remaining(&RATE), 8);
        assert_eq!(g.active(0), 1);
    }

    #[test]
    fn unknown_keys_get_a_full_bucket() {
        let mut g = Group::default();
        g.store(7, &spent(0, 10), &RATE, 0);
        assert_eq!(g.bucket(8, &RATE, 0).remaining(&RATE), 10);
        assert_eq!(
            g.bucket(0, &RATE, 0).remaining(&RATE),
            10,
            "0 never matches"
        );
    }

    #[test]
    fn refilled_slots_are_reused_before_anyone_is_evicted() {
        let mut g = Group::default();
        for fp in 1..=WAYS as u64 {
            g.store(fp, &spent(0, 1), &RATE, 0); // full again 1 s later
        }
        g.store(1, &spent(0, 5), &RATE, 0); // full again 5 s later
        // At 2 s, slots 2..=8 are full again: a newcomer reuses one and nobody loses tokens.
        assert_eq!(
            g.store(100, &spent(2 * SEC, 1), &RATE, 2 * SEC),
            Placement::Claimed
        );
        assert_eq!(g.bucket(1, &RATE, 2 * SEC).remaining(&RATE), 5);
    }

    #[test]
    fn among_equally_spent_buckets_the_most_recent_is_evicted() {
        let mut g = Group::default();
        // An established client spent one token at 0; a flood of one-request clients follows.
        g.store(1, &spent(0, 1), &RATE, 0);
        for fp in 2..=WAYS as u64 {
            g.store(fp, &spent(fp, 1), &RATE, fp);
        }
        for fp in 100..200 {
            assert_eq!(g.store(fp, &spent(fp, 1), &RATE, fp), Placement::Evicted);
        }
        assert_eq!(
            g.bucket(1, &RATE, 200).remaining(&RATE),
            9,
            "the established client stays"
        );
        assert_eq!(g.bucket(199, &RATE, 200).remaining(&RATE), 9);
    }

    #[test]
    fn a_full_group_evicts_the_bucket_missing_the_fewest_tokens() {
        let mut g = Group::default();
        for fp in 1..=WAYS as u64 {
            // fp 3 has spent only one token: it would be full first.
            let taken = if fp == 3 { 1 } else { 5 };
            g.store(fp, &spent(0, taken), &RATE, 0);
        }
        assert_eq!(g.active(0), WAYS);
        assert_eq!(g.store(100, &spent(0, 1), &RATE, 0), Placement::Evicted);
        assert_eq!(
            g.bucket(3, &RATE, 0).remaining(&RATE),
            10,
            "evicted: full again"
        );
        for fp in (1..=WAYS as u64).filter(|fp| *fp != 3) {
            assert_eq!(g.bucket(fp, &RATE, 0).remaining(&RATE), 5, "fp {fp} kept");
        }
    }
}
