//! A copy of a request's headers, decoded from the proxy-wasm map encoding, kept in step with the
//! changes a filter makes. Plain Rust; `host::headers` decides when one is taken and used.
//!
//! Why: every header read through the host is a call out of the VM and, for the value, a call
//! back in to allocate it; reading the whole map once costs the same as reading one header. A
//! filter that reads several headers, or needs to know whether a header is there before removing
//! it, reads them here instead.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::ops::Range;

use smallvec::SmallVec;

/// Header names and values as the host gave them (names lowercase in Envoy), in order.
///
/// The bytes stay in the one buffer the host filled; entries are ranges into it, so a copy of
/// the whole map costs one allocation however many headers it has. Names and values written
/// later go to a second buffer, made room for once at the first write: growing the host's buffer
/// instead would copy it. The list of entries lives inside the copy up to a size that covers a
/// usual request, so that the copy is one allocation (BENCHMARKS.md, "Our own code").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSnapshot {
    buffers: Buffers,
    entries: SmallVec<[Entry; INLINE_ENTRIES]>,
    request_line: RequestLineMemo,
}

/// The request line's pseudo-headers, which every stage reads (`:method`, `:path` and
/// `:authority`: each stage's request matching, rate-limit's key, route-rewrite's rules), found
/// in one pass over the headers the first time one of them is read, and forgotten when a write
/// could change it (a replace or a removal, or an added pseudo-header). Each lookup would
/// otherwise walk all the headers, to the end for a repeated header to join: eight of a
/// request's ten lookups through the chain are of these three.
#[derive(Debug, Clone, Default)]
struct RequestLineMemo(OnceCell<[Found; REQUEST_LINE.len()]>);

/// The names `RequestLineMemo` keeps, as the filters ask for them.
const REQUEST_LINE: [&str; 3] = [":method", ":path", ":authority"];

/// Where a header of the request line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Missing,
    /// The entry at this position, the only one of that name.
    Once(usize),
    /// More than once: looked up (and joined) as any other header.
    Repeated,
}

/// Only a cache of what the entries say: two copies with the same headers are equal whatever
/// each has worked out so far.
impl PartialEq for RequestLineMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RequestLineMemo {}

/// The two buffers as one range of positions: the host's bytes, then the written ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Buffers {
    host: Vec<u8>,
    written: Vec<u8>,
}

/// How many headers the filters may add to a request (bearer-auth three, route-rewrite two): a
/// request whose own headers leave less room than this inline gets a list of its own on the heap,
/// sized for them at once.
const ROOM_FOR_WRITES: usize = 6;

/// How many headers a copy holds before its list of entries moves to the heap: a request's own
/// (the client's and the few Envoy adds) and the ones the filters write.
const INLINE_ENTRIES: usize = 32;

/// How many bytes of written names and values the first write makes room for: the names
/// bearer-auth and route-rewrite write to one request (about 100 bytes) and values of a few dozen
/// bytes each. A block of this size is one allocation from a size class (`allocator.rs`), and
/// appending to a `Vec` is a plain copy where a `SmallVec`'s insert ran twice the code.
const WRITTEN_BYTES_RESERVED: usize = 256;

/// What writing a header takes, given the headers there are (`HeaderSnapshot::write_needed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteNeeded {
    Nothing,
    Add,
    Replace,
}

/// The request headers one filter alone may write: every name starting with `prefix` and each
/// of `names` (ASCII case-insensitive). The filter removes a client's own copies before it writes
/// its values, so that a client can never speak for it, and then knows none is there to replace.
#[derive(Debug, Clone, Copy)]
pub struct OwnedHeaders<'a, N> {
    pub prefix: Option<&'a str>,
    pub names: &'a [N],
}

impl<N: AsRef<str>> OwnedHeaders<'_, N> {
    /// Whether `name` is one of these.
    pub fn claims(&self, name: &[u8]) -> bool {
        let prefixed = self.prefix.is_some_and(|prefix| {
            name.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
        });
        prefixed
            || self
                .names
                .iter()
                .any(|owned| owned.as_ref().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// Where one header's name and value are in the buffers (`Buffers::get`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Range<usize>,
    value: Range<usize>,
}

impl Buffers {
    /// The bytes at `range`: in the host's buffer, or past its end in the written one.
    fn get(&self, range: &Range<usize>) -> Option<&[u8]> {
        let base = self.host.len();
        if range.start < base {
            self.host.get(range.clone())
        } else {
            self.written
                .get(range.start.wrapping_sub(base)..range.end.wrapping_sub(base))
        }
    }

    /// Copies a name and a value into the written buffer, for an entry.
    fn append(&mut self, name: &[u8], value: &[u8]) -> Entry {
        if self.written.capacity() == 0 {
            self.written.reserve(WRITTEN_BYTES_RESERVED);
        }
        let base = self.host.len();
        let name_start = base.saturating_add(self.written.len());
        self.written.extend_from_slice(name);
        let value_start = base.saturating_add(self.written.len());
        self.written.extend_from_slice(value);
        Entry {
            name: name_start..value_start,
            value: value_start..base.saturating_add(self.written.len()),
        }
    }
}

impl HeaderSnapshot {
    pub fn from_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let mut snapshot = Self::default();
        for (name, value) in &pairs {
            snapshot.push(name, value);
        }
        snapshot
    }

    /// Decodes proxy-wasm's map encoding: a u32 count, then count × (u32 name length, u32 value
    /// length), then each name and each value followed by a NUL byte (all little-endian). The
    /// lengths are not trusted: decoding stops at the first entry that does not fit.
    pub fn decode(bytes: Vec<u8>) -> Self {
        let entries = Self::entries(&bytes);
        Self {
            buffers: Buffers {
                host: bytes,
                written: Vec::new(),
            },
            entries,
            request_line: RequestLineMemo::default(),
        }
    }

    fn entries(bytes: &[u8]) -> SmallVec<[Entry; INLINE_ENTRIES]> {
        let u32_at = |at: usize| -> Option<usize> {
            let b = bytes.get(at..at.checked_add(4)?)?;
            let arr: [u8; 4] = b.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(arr)).ok()
        };
        let mut entries = SmallVec::new();
        let Some(count) = u32_at(0) else {
            return entries;
        };
        // A request whose headers, with room for the few the filters add, do not fit inline
        // gets its list sized once (an entry takes at least 10 bytes of the encoding, so a count
        // the bytes cannot hold does not reserve more): grown header by header it would be
        // reallocated several times.
        let needed = count.min(bytes.len() / 10).saturating_add(ROOM_FOR_WRITES);
        if needed > INLINE_ENTRIES {
            entries.reserve_exact(needed);
        }
        let Some(mut data) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
            return entries;
        };
        for i in 0..count {
            let Some(entry) = i.checked_mul(8).and_then(|n| n.checked_add(4)) else {
                break;
            };
            let (Some(name_len), Some(value_len)) =
                (u32_at(entry), entry.checked_add(4).and_then(u32_at))
            else {
                break;
            };
            let name_end = data.checked_add(name_len);
            let value_start = name_end.and_then(|n| n.checked_add(1));
            let value_end = value_start.and_then(|n| n.checked_add(value_len));
            let (Some(name_end), Some(value_start), Some(value_end)) =
                (name_end, value_start, value_end)
            else {
                break;
            };
            if value_end > bytes.len() {
                break;
            }
            entries.push(Entry {
                name: data..name_end,
                value: value_start..value_end,
            });
            data = value_end.saturating_add(1);
        }
        entries
    }

    /// The value of `name` (ASCII case-insensitive), borrowed from the copy. Several headers of
    /// that name are joined with `,` (RFC 9110 §5.3), which is the one case that copies. Envoy's
    /// own single-header read returns only the first, which would let a second copy (a second
    /// `Authorization`, say) go unseen; joined, a duplicate credential reads as the malformed
    /// value it is.
    pub fn value(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        match self.request_line(name) {
            Some(Found::Missing) => return None,
            Some(Found::Once(at)) => return self.value_at(at).map(Cow::Borrowed),
            Some(Found::Repeated) | None => {}
        }
        let mut matching = self.matching(name);
        let first = matching.next()?;
        let Some(second) = matching.next() else {
            return Some(Cow::Borrowed(first));
        };
        let mut joined = first.to_vec();
        for value in std::iter::once(second).chain(matching) {
            joined.push(b',');
            joined.extend_from_slice(value);
        }
        Some(Cow::Owned(joined))
    }

    /// The value of the entry at `at`.
    fn value_at(&self, at: usize) -> Option<&[u8]> {
        self.buffers.get(&self.entries.get(at)?.value)
    }

    /// Where `name` is, if it is one of the request line's pseudo-headers (`RequestLineMemo`).
    fn request_line(&self, name: &str) -> Option<Found> {
        let which = REQUEST_LINE.iter().position(|n| *n == name)?;
        let found = self.request_line.0.get_or_init(|| {
            let mut found = [Found::Missing; REQUEST_LINE.len()];
            for (at, entry) in self.entries.iter().enumerate() {
                for (slot, pseudo) in found.iter_mut().zip(REQUEST_LINE) {
                    if is_named(&self.buffers, entry, pseudo) {
                        *slot = match slot {
                            Found::Missing => Found::Once(at),
                            _ => Found::Repeated,
                        };
                    }
                }
            }
            found
        });
        found.get(which).copied()
    }

    /// `value` as text; a value that is not UTF-8 is read lossily.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.value(name).map(|value| match value {
            // The strict check first: it is the one with a fast path for ASCII.
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes)
                .map_or_else(|_| String::from_utf8_lossy(bytes), Cow::Borrowed),
            Cow::Owned(bytes) => Cow::Owned(text(bytes)),
        })
    }

    /// `value`, owned.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.value(name).map(Cow::into_owned)
    }

    /// `text`, owned.
    pub fn get_text(&self, name: &str) -> Option<String> {
        self.text(name).map(Cow::into_owned)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.matching(name).next().is_some()
    }

    /// The header names that start with `prefix` (ASCII case-insensitive), lowercased, in order
    /// (a repeated name appears each time). Names that are not UTF-8 are skipped: no filter
    /// matches on them.
    #[cfg(test)]
    pub fn names_starting_with(&self, prefix: &str) -> Vec<String> {
        self.pairs()
            .filter(|(n, _)| {
                n.get(..prefix.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
            })
            .filter_map(|(n, _)| std::str::from_utf8(n).ok())
            .map(str::to_ascii_lowercase)
            .collect()
    }

    /// The names of the headers `owned` claims, lowercased, each once, in order. Names that are
    /// not UTF-8 are skipped: no filter writes them. Only the matches are copied: this runs on
    /// every request, and usually finds none.
    pub fn names_owned<N: AsRef<str>>(&self, owned: &OwnedHeaders<'_, N>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in self.pairs() {
            if !owned.claims(name) {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// What a replace (`Some`) or a removal (`None`) of `name` must do: nothing (no header of
    /// that name to remove, or exactly one with that value), add it (none there yet), or replace
    /// (or remove) what is there. One pass over the headers, or none for the request line's
    /// (`RequestLineMemo` knows where they are).
    pub fn write_needed(&self, name: &str, value: Option<&str>) -> WriteNeeded {
        if let Some(found) = self.request_line(name) {
            return match (found, value) {
                (Found::Missing, None) => WriteNeeded::Nothing,
                (Found::Missing, Some(_)) => WriteNeeded::Add,
                (Found::Once(at), Some(v)) if self.value_at(at) == Some(v.as_bytes()) => {
                    WriteNeeded::Nothing
                }
                _ => WriteNeeded::Replace,
            };
        }
        let mut matching = self.matching(name);
        match (value, matching.next()) {
            (None, None) => WriteNeeded::Nothing,
            (Some(_), None) => WriteNeeded::Add,
            (Some(v), Some(current)) if current == v.as_bytes() && matching.next().is_none() => {
                WriteNeeded::Nothing
            }
            _ => WriteNeeded::Replace,
        }
    }

    /// Whether the write would leave the headers as they are.
    pub fn already(&self, name: &str, value: Option<&str>) -> bool {
        self.write_needed(name, value) == WriteNeeded::Nothing
    }

    /// Mirrors a replace (`Some`) or a removal (`None`) made through the host. A replace keeps
    /// the first header of that name where it is, with the new value (and the name as written
    /// now), and drops any later ones; a name not there yet goes at the end. The common case, one
    /// header replaced, moves no other entry.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        if let (Some(value), Some(Found::Once(at))) = (value, self.request_line(name)) {
            // The one header of a request-line name, replaced where it is under `name` (one of
            // the memo's own spellings): the memo still holds, and no pass over the headers is
            // needed.
            let entry = self.buffers.append(name.as_bytes(), value.as_bytes());
            if let Some(slot) = self.entries.get_mut(at) {
                *slot = entry;
            }
            return;
        }
        self.request_line = RequestLineMemo::default();
        let buffers = &self.buffers;
        let named = |e: &Entry| is_named(buffers, e, name);
        let Some(value) = value else {
            self.entries.retain(|e| !named(e));
            return;
        };
        let Some(first) = self.entries.iter().position(named) else {
            self.push(name.as_bytes(), value.as_bytes());
            return;
        };
        let later = first.saturating_add(1);
        if self
            .entries
            .get(later..)
            .is_some_and(|rest| rest.iter().any(named))
        {
            let mut index = 0usize;
            self.entries.retain(|e| {
                let keep = index <= first || !named(e);
                index = index.saturating_add(1);
                keep
            });
        }
        let entry = self.buffers.append(name.as_bytes(), value.as_bytes());
        if let Some(slot) = self.entries.get_mut(first) {
            *slot = entry;
        }
    }

    /// Mirrors an add made through the host of a header `write_needed` found missing
    /// (`WriteNeeded::Add`): `set` without looking for one to replace.
    pub fn add_missing(&mut self, name: &str, value: &str) {
        self.push(name.as_bytes(), value.as_bytes());
    }

    /// Appends a header at the end.
    fn push(&mut self, name: &[u8], value: &[u8]) {
        // Entries before the new one keep their places: only another pseudo-header can change
        // what the memo says (the request line's names all start with `:`).
        if name.first() == Some(&b':') {
            self.request_line = RequestLineMemo::default();
        }
        let entry = self.buffers.append(name, value);
        self.entries.push(entry);
    }

    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .filter_map(|e| Some((self.buffers.get(&e.name)?, self.buffers.get(&e.value)?)))
    }

    /// The values of the headers named `name`, in order.
    fn matching<'s, 'n>(&'s self, name: &'n str) -> Matching<'s, 'n> {
        Matching {
            snapshot: self,
            name,
            next: 0,
        }
    }
}

/// The values of the headers of one name (`HeaderSnapshot::matching`), found by a plain loop
/// over the entries: every lookup runs it over all of a request's headers, with the length check
/// first.
struct Matching<'s, 'n> {
    snapshot: &'s HeaderSnapshot,
    name: &'n str,
    next: usize,
}

impl<'s> Iterator for Matching<'s, '_> {
    type Item = &'s [u8];

    fn next(&mut self) -> Option<&'s [u8]> {
        let HeaderSnapshot {
            buffers, entries, ..
        } = self.snapshot;
        while let Some(entry) = entries.get(self.next) {
            self.next = self.next.saturating_add(1);
            if is_named(buffers, entry, self.name)
                && let Some(value) = buffers.get(&entry.value)
            {
                return Some(value);
            }
        }
        None
    }
}

/// Whether the entry's name is `name` (ASCII case-insensitive). Every lookup runs this over
/// the headers: the lengths, at hand in the entry, rule out nearly all of them before any byte
/// is compared, and a plain comparison, a fraction of the case-folding one in wasm, finds the
/// name as Envoy spells it (lower case) and as filters ask for it.
fn is_named(buffers: &Buffers, entry: &Entry, name: &str) -> bool {
    entry.name.len() == name.len()
        && buffers
            .get(&entry.name)
            .is_some_and(|n| n == name.as_bytes() || n.eq_ignore_ascii_case(name.as_bytes()))
}

/// Bytes as text, without a copy when they are UTF-8 (as header values nearly always are).
pub fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| lossy(e.as_bytes()))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = u32::try_from(pairs.len()).unwrap().to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend(u32::try_from(n.len()).unwrap().to_le_bytes());
            out.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend(n.as_bytes());
            out.push(0);
            out.extend(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_the_proxy_wasm_map_encoding() {
        let s = HeaderSnapshot::decode(encode(&[
            (":path", "/api/notes"),
            ("authorization", "Bearer x"),
            ("empty", ""),
        ]));
        assert_eq!(s.get_text(":path").as_deref(), Some("/api/notes"));
        assert_eq!(s.get("Authorization").as_deref(), Some(&b"Bearer x"[..]));
        assert_eq!(s.get_text("empty").as_deref(), Some(""));
        assert_eq!(s.get("missing"), None);
        assert_eq!(
            s.names_starting_with(""),
            [":path", "authorization", "empty"]
        );
    }

    #[test]
    fn lengths_that_do_not_fit_stop_decoding_without_panicking() {
        let mut bytes = encode(&[("a", "1"), ("b", "2")]);
        assert_eq!(
            HeaderSnapshot::decode(bytes.clone())
                .names_starting_with("")
                .len(),
            2
        );
        bytes.truncate(bytes.len() - 3);
        assert_eq!(
            HeaderSnapshot::decode(bytes.clone())
                .names_starting_with("")
                .len(),
            1
        );
        for cut in 0..bytes.len() {
            let _ = HeaderSnapshot::decode(bytes[..cut].to_vec());
        }
        let mut huge = encode(&[("a", "1")]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            HeaderSnapshot::decode(huge).names_starting_with("").len(),
            0
        );
        assert_eq!(
            HeaderSnapshot::decode(u32::MAX.to_le_bytes().to_vec())
                .names_starting_with("")
                .len(),
            0
        );
    }

    #[test]
    fn repeated_headers_are_joined_not_hidden_behind_the_first() {
        let s = HeaderSnapshot::decode(encode(&[("x-a", "1"), ("other", "o"), ("X-A", "2")]));
        assert_eq!(s.get_text("x-a").as_deref(), Some("1,2"));
    }

    #[test]
    fn a_single_value_is_borrowed_only_a_joined_one_is_copied() {
        let s = HeaderSnapshot::decode(encode(&[("x-a", "1"), ("x-b", "b"), ("X-A", "2")]));
        assert!(matches!(s.value("x-b"), Some(Cow::Borrowed(b"b"))));
        assert!(matches!(s.text("X-B"), Some(Cow::Borrowed("b"))));
        assert_eq!(s.value("x-a"), Some(Cow::Owned(b"1,2".to_vec())));
        assert_eq!(s.text("x-a"), Some(Cow::Owned("1,2".to_owned())));
        let lossy = HeaderSnapshot::decode(encode(&[("x-c", "\u{e9}")]));
        assert_eq!(lossy.text("x-c").as_deref(), Some("\u{e9}"));
    }

    #[test]
    fn set_and_remove_mirror_the_host() {
        let mut s = HeaderSnapshot::decode(encode(&[("x-a", "1"), (":path", "/"), ("x-a", "2")]));
        s.set("x-a", Some("3"));
        assert_eq!(s.get_text("x-a").as_deref(), Some("3"));
        assert_eq!(s.names_starting_with(""), ["x-a", ":path"]);
        s.set(":path", None);
        assert!(!s.contains(":path"));
        s.set("x-new", Some("n"));
        assert_eq!(
            s.names_starting_with("").last().map(String::as_str),
            Some("x-new")
        );
        assert_eq!(s.names_starting_with("X-"), ["x-a", "x-new"]);
        // One header replaced stays where it was.
        let mut s = HeaderSnapshot::decode(encode(&[("a", "1"), ("b", "2"), ("c", "3")]));
        s.set("B", Some("two"));
        assert_eq!(s.names_starting_with(""), ["a", "b", "c"]);
        assert_eq!(s.get_text("b").as_deref(), Some("two"));
        assert_eq!(s.get_text("c").as_deref(), Some("3"));
    }

    #[test]
    fn adding_a_missing_header_is_a_set_without_the_search() {
        let host = encode(&[(":path", "/"), ("x-a", "1")]);
        let (mut added, mut set) = (
            HeaderSnapshot::decode(host.clone()),
            HeaderSnapshot::decode(host),
        );
        assert_eq!(added.write_needed("x-new", Some("n")), WriteNeeded::Add);
        added.add_missing("x-new", "n");
        set.set("x-new", Some("n"));
        assert_eq!(added, set);
        assert_eq!(added.get_text("x-new").as_deref(), Some("n"));
    }

    #[test]
    fn more_headers_and_written_bytes_than_fit_inline_read_back() {
        let own: Vec<(String, String)> = (0..INLINE_ENTRIES + 8)
            .map(|i| (format!("x-own-{i}"), format!("value {i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = own.iter().map(|(n, v)| (&**n, &**v)).collect();
        let mut s = HeaderSnapshot::decode(encode(&pairs));
        let long = "w".repeat(WRITTEN_BYTES_RESERVED);
        for i in 0..INLINE_ENTRIES {
            s.set(&format!("x-written-{i}"), Some(&format!("{long}{i}")));
        }
        s.set("x-own-3", Some("replaced"));
        for (i, (name, value)) in own.iter().enumerate() {
            let expected = if i == 3 { "replaced" } else { value.as_str() };
            assert_eq!(s.get_text(name).as_deref(), Some(expected));
        }
        for i in 0..INLINE_ENTRIES {
            let expected = format!("{long}{i}");
            assert_eq!(
                s.get_text(&format!("x-written-{i}")).as_deref(),
                Some(&*expected)
            );
        }
        assert_eq!(s.names_starting_with("x-").len(), 2 * INLINE_ENTRIES + 8);
    }

    #[test]
    fn a_write_that_changes_nothing_is_recognised() {
        let s = HeaderSnapshot::decode(encode(&[(":path", "/a"), ("x-a", "1"), ("x-a", "1")]));
        assert!(s.already("missing", None));
        assert!(s.already(":path", Some("/a")));
        assert!(!s.already(":path", Some("/b")));
        assert!(!s.already(":path", None));
        assert!(!s.already("missing", Some("")));
        // Two headers of the name: a replace leaves one, so it changes something.
        assert!(!s.already("x-a", Some("1")));
        assert_eq!(s.write_needed("missing", Some("v")), WriteNeeded::Add);
        assert_eq!(s.write_needed(":path", Some("/b")), WriteNeeded::Replace);
        assert_eq!(s.write_needed("X-A", None), WriteNeeded::Replace);
        assert_eq!(s.write_needed("missing", None), WriteNeeded::Nothing);
    }

    #[test]
    fn owned_headers_are_named_once_lowercased_in_order() {
        let s = HeaderSnapshot::decode(encode(&[
            ("X-Auth-Subject", "spoofed"),
            ("x-groups", "admin"),
            (":path", "/"),
            ("x-auth-subject", "again"),
            ("x-authz", "not ours"),
            ("X-GROUPS", "more"),
        ]));
        let owned = OwnedHeaders {
            prefix: Some("x-auth-"),
            names: &["x-groups"],
        };
        assert_eq!(s.names_owned(&owned), ["x-auth-subject", "x-groups"]);
        assert!(owned.claims(b"X-AUTH-scope") && owned.claims(b"x-Groups"));
        assert!(!owned.claims(b"x-auth") && !owned.claims(b"x-groupsx"));
        let by_name = OwnedHeaders::<&str> {
            prefix: None,
            names: &["x-authz"],
        };
        assert_eq!(s.names_owned(&by_name), ["x-authz"]);
        let none = OwnedHeaders::<&str> {
            prefix: None,
            names: &[],
        };
        assert!(s.names_owned(&none).is_empty() && !none.claims(b""));
    }

    #[test]
    fn the_request_line_is_written_in_place_without_a_pass() {
        let mut s = HeaderSnapshot::decode(encode(&[
            (":method", "GET"),
            (":path", "/a"),
            (":authority", "h"),
            ("x-a", "1"),
        ]));
        assert_eq!(s.write_needed(":path", Some("/a")), WriteNeeded::Nothing);
        assert_eq!(s.write_needed(":path", Some("/b")), WriteNeeded::Replace);
        assert_eq!(s.write_needed(":path", None), WriteNeeded::Replace);
        s.set(":path", Some("/b"));
        assert_eq!(s.get_text(":path").as_deref(), Some("/b"));
        assert_eq!(
            s.names_starting_with(""),
            [":method", ":path", ":authority", "x-a"]
        );
        assert_eq!(s.get_text(":authority").as_deref(), Some("h"));
        s.set(":path", None);
        assert_eq!(s.write_needed(":path", None), WriteNeeded::Nothing);
        assert_eq!(s.write_needed(":path", Some("/c")), WriteNeeded::Add);
        assert_eq!(s.get_text(":method").as_deref(), Some("GET"));
    }

    #[test]
    fn values_that_are_not_utf8_stay_bytes_and_read_lossily_as_text() {
        let s = HeaderSnapshot::from_pairs(vec![(b"authorization".to_vec(), vec![0xff, b'a'])]);
        assert_eq!(s.get("authorization"), Some(vec![0xff, b'a']));
        assert_eq!(s.get_text("authorization").as_deref(), Some("\u{fffd}a"));
    }

    /// Properties over generated headers (proptest): the decoder takes any bytes, and a copy
    /// kept in step with writes reads like the host's map would.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// Names from a small alphabet, so that repeats and case variants are common.
        fn name() -> impl Strategy<Value = String> {
            "[aAbB:-]{1,3}"
        }

        /// The request line's names as the filters ask for them, another case of one, and
        /// others.
        const REQUEST_LINE_NAMES: [&str; 6] =
            [":method", ":path", ":authority", ":PATH", ":scheme", "x-a"];

        fn request_line_name() -> impl Strategy<Value = String> {
            proptest::sample::select(REQUEST_LINE_NAMES.to_vec()).prop_map(str::to_owned)
        }

        /// `HeaderSnapshot::set` on a plain list: the first header of the name keeps its place
        /// with the new value and the name as written now, later ones go; a new name goes last.
        fn model_set(model: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
            let named = |n: &String| n.eq_ignore_ascii_case(name);
            let first = model.iter().position(|(n, _)| named(n));
            let mut at = 0;
            model.retain(|(n, _)| {
                let keep = !named(n) || (Some(at) == first && value.is_some());
                at += 1;
                keep
            });
            if let Some(value) = value {
                match model.iter_mut().find(|(n, _)| named(n)) {
                    Some(entry) => *entry = (name.to_owned(), value.to_owned()),
                    None => model.push((name.to_owned(), value.to_owned())),
                }
            }
        }

        /// What a write of `name` needs, by a plain list of the headers.
        fn model_needed(model: &[(String, String)], name: &str, new: Option<&str>) -> WriteNeeded {
            let values: Vec<&str> = model
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            match (new, values.as_slice()) {
                (None, []) => WriteNeeded::Nothing,
                (Some(_), []) => WriteNeeded::Add,
                (Some(v), [only]) if v == *only => WriteNeeded::Nothing,
                _ => WriteNeeded::Replace,
            }
        }

        /// Any text, NUL and non-ASCII included.
        fn value() -> impl Strategy<Value = String> {
            "(?s).{0,6}"
        }

        fn snapshot_of(pairs: &[(String, String)]) -> HeaderSnapshot {
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            HeaderSnapshot::decode(encode(&refs))
        }

        /// What `get` must say for `name`: every value of that name, in order, joined by `,`.
        fn joined(pairs: &[(String, String)], name: &str) -> Option<String> {
            let values: Vec<&str> = pairs
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        }

        proptest! {
            #[test]
            fn any_bytes_decode_without_panicking(bytes in vec(any::<u8>(), 0..200)) {
                let snapshot = HeaderSnapshot::decode(bytes);
                for name in snapshot.names_starting_with("") {
                    prop_assert!(snapshot.contains(&name));
                }
            }

            #[test]
            fn encoded_headers_read_back(pairs in vec((name(), value()), 0..8)) {
                let snapshot = snapshot_of(&pairs);
                for (name, _) in &pairs {
                    prop_assert_eq!(snapshot.get_text(name), joined(&pairs, name));
                }
                prop_assert_eq!(snapshot.names_starting_with("").len(), pairs.len());
            }

            /// Reads of the request line's headers (kept by `RequestLineMemo`) and of others,
            /// interleaved with writes, against a plain list of the headers.
            #[test]
            fn reads_between_writes_see_every_write(
                pairs in vec((request_line_name(), value()), 0..8),
                writes in vec((request_line_name(), proptest::option::of(value())), 0..6),
            ) {
                let mut snapshot = snapshot_of(&pairs);
                let mut model = pairs.clone();
                for (name, new) in writes {
                    for probe in REQUEST_LINE_NAMES {
                        prop_assert_eq!(snapshot.get_text(probe), joined(&model, probe));
                    }
                    let missing = !model.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name));
                    match (&new, missing) {
                        (Some(v), true) => snapshot.add_missing(&name, v),
                        _ => snapshot.set(&name, new.as_deref()),
                    }
                    model_set(&mut model, &name, new.as_deref());
                }
                for probe in REQUEST_LINE_NAMES {
                    prop_assert_eq!(snapshot.get_text(probe), joined(&model, probe));
                    // The memo, built before the writes and kept through in-place ones, still
                    // says what a write needs.
                    for new in [None, Some(""), Some("/x")] {
                        prop_assert_eq!(
                            snapshot.write_needed(probe, new),
                            model_needed(&model, probe, new)
                        );
                    }
                }
            }

            /// With or without the memo (the request line's names, others), what a write needs
            /// is what the headers say.
            #[test]
            fn write_needed_agrees_with_the_headers(
                pairs in vec((request_line_name(), value()), 0..8),
                target in request_line_name(),
                new in proptest::option::of(value()),
            ) {
                let snapshot = snapshot_of(&pairs);
                prop_assert_eq!(
                    snapshot.write_needed(&target, new.as_deref()),
                    model_needed(&pairs, &target, new.as_deref())
                );
            }

            #[test]
            fn a_write_reads_back_and_leaves_the_other_headers(
                pairs in vec((name(), value()), 0..8),
                target in name(),
                new in proptest::option::of(value()),
            ) {
                let mut snapshot = snapshot_of(&pairs);
                snapshot.set(&target, new.as_deref());
                prop_assert_eq!(snapshot.get_text(&target), new.clone());
                prop_assert!(snapshot.already(&target, new.as_deref()));
                for (name, _) in pairs.iter().filter(|(n, _)| !n.eq_ignore_ascii_case(&target)) {
                    prop_assert_eq!(snapshot.get_text(name), joined(&pairs, name));
                }
            }
        }
    }
}
