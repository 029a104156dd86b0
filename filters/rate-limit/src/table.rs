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

/// One slot's fields, as read from or written to the group's bytes.
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

/// Where each field of a slot starts, within the slot.
const FINGERPRINT_AT: usize = 0;
const UNITS_AT: usize = 8;
const LAST_NS_AT: usize = 24;
const FULL_AT_AT: usize = 32;
const TOKEN_NS_AT: usize = 40;

/// Whole tokens a bucket full again at `full_at`, refilling one token per `token_ns`, still
/// misses at `now` (0: full, the slot is free).
fn missing_tokens(fingerprint: u64, full_at: u64, token_ns: u64, now: u64) -> u64 {
    if fingerprint == 0 || full_at <= now {
        return 0;
    }
    (full_at - now).div_ceil(token_ns.max(1))
}

/// One shared-data value: `WAYS` bucket slots, kept in their stored form. A request reads one
/// slot and writes it back, so the group is never unpacked whole: its bytes are read where a
/// field is needed and written back as they are, with the one slot changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    bytes: [u8; GROUP_LEN],
}

impl Default for Group {
    fn default() -> Self {
        let mut bytes = [0u8; GROUP_LEN];
        bytes[..MAGIC.len()].copy_from_slice(&MAGIC);
        Self { bytes }
    }
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
    /// Takes a stored group; `None` if it is not in this format (treat it as empty).
    pub fn decode(bytes: &[u8]) -> Option<Group> {
        if !bytes.starts_with(&MAGIC) {
            return None;
        }
        let bytes = <[u8; GROUP_LEN]>::try_from(bytes).ok()?;
        Some(Group { bytes })
    }

    /// The stored form.
    pub fn encode(&self) -> &[u8; GROUP_LEN] {
        &self.bytes
    }

    /// Offset of slot `index`'s field that starts `field_at` into the slot.
    const fn at(index: usize, field_at: usize) -> usize {
        MAGIC.len() + index * ENTRY_LEN + field_at
    }

    fn read_u64(&self, at: usize) -> u64 {
        self.bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }

    fn read_u128(&self, at: usize) -> u128 {
        self.bytes
            .get(at..at + 16)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u128::from_le_bytes)
    }

    fn write(&mut self, at: usize, value: &[u8]) {
        if let Some(field) = self.bytes.get_mut(at..at + value.len()) {
            field.copy_from_slice(value);
        }
    }

    fn fingerprint(&self, index: usize) -> u64 {
        self.read_u64(Self::at(index, FINGERPRINT_AT))
    }

    fn last_ns(&self, index: usize) -> u64 {
        self.read_u64(Self::at(index, LAST_NS_AT))
    }

    /// Whole tokens slot `index` still misses at `now` (0: full or unused, the slot is free).
    fn missing_tokens(&self, index: usize, now: u64) -> u64 {
        missing_tokens(
            self.fingerprint(index),
            self.read_u64(Self::at(index, FULL_AT_AT)),
            self.read_u64(Self::at(index, TOKEN_NS_AT)),
            now,
        )
    }

    fn put(&mut self, index: usize, entry: &Entry) {
        self.write(
            Self::at(index, FINGERPRINT_AT),
            &entry.fingerprint.to_le_bytes(),
        );
        self.write(Self::at(index, UNITS_AT), &entry.units.to_le_bytes());
        self.write(Self::at(index, LAST_NS_AT), &entry.last_ns.to_le_bytes());
        self.write(Self::at(index, FULL_AT_AT), &entry.full_at.to_le_bytes());
        self.write(Self::at(index, TOKEN_NS_AT), &entry.token_ns.to_le_bytes());
    }

    fn position(&self, fingerprint: u64) -> Option<usize> {
        if fingerprint == 0 {
            return None;
        }
        (0..WAYS).find(|&i| self.fingerprint(i) == fingerprint)
    }

    /// The key's bucket as stored, or a full one if it has none here (never used, reused or
    /// evicted: all mean "full").
    pub fn bucket(&self, fingerprint: u64, rate: &Rate, now: u64) -> Bucket {
        match self.position(fingerprint) {
            Some(i) => Bucket {
                units: self.read_u128(Self::at(i, UNITS_AT)),
                last_ns: self.last_ns(i),
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
        if let Some(i) = self.position(fingerprint) {
            self.put(i, &entry);
            return Placement::Updated;
        }
        // Unused and refilled slots first (0 missing), then the fewest whole tokens missing, then
        // the most recently used.
        let victim = (0..WAYS).min_by_key(|&i| {
            (
                self.missing_tokens(i, now),
                std::cmp::Reverse(self.last_ns(i)),
            )
        });
        match victim {
            Some(i) => {
                let placement = if self.missing_tokens(i, now) > 0 {
                    Placement::Evicted
                } else {
                    Placement::Claimed
                };
                self.put(i, &entry);
                placement
            }
            // WAYS > 0, so there is always a victim; claim nothing rather than panic.
            None => Placement::Claimed,
        }
    }

    /// Number of slots holding a bucket that is not yet full at `now`.
    pub fn active(&self, now: u64) -> usize {
        (0..WAYS)
            .filter(|&i| self.missing_tokens(i, now) > 0)
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
        assert_eq!(Group::decode(bytes), Some(g));
    }

    /// The stored form is shared with every other VM, and with filters of other versions loaded
    /// in the same Envoy: a slot's fields stay where they are, little-endian.
    #[test]
    fn a_slot_is_stored_field_by_field_at_fixed_offsets() {
        let mut g = Group::default();
        g.store(9, &spent(0, 1), &RATE, 0);
        g.store(0x0102_0304_0506_0708, &spent(5, 3), &RATE, 5);
        let bucket = spent(5, 3);
        let bytes = g.encode();
        assert_eq!(&bytes[..4], b"RLG1");
        let second = &bytes[4 + ENTRY_LEN..4 + 2 * ENTRY_LEN];
        let mut expected = Vec::new();
        expected.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        expected.extend_from_slice(&bucket.units.to_le_bytes());
        expected.extend_from_slice(&5u64.to_le_bytes());
        expected.extend_from_slice(&bucket.full_at(&RATE).to_le_bytes());
        expected.extend_from_slice(&SEC.to_le_bytes()); // 10 s for 10 tokens
        assert_eq!(second, expected.as_slice());
        assert!(bytes[4 + 2 * ENTRY_LEN..].iter().all(|b| *b == 0));
    }

    #[test]
    fn values_in_another_format_are_rejected_not_misread() {
        assert_eq!(Group::decode(b""), None);
        assert_eq!(Group::decode(b"RLG1short"), None);
        let mut other = *Group::default().encode();
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
