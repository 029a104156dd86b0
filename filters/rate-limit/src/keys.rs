//! Which bucket a request counts against: the policy's key read from the request, hashed to a
//! slot of the table.

use std::borrow::Cow;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::bucket::Rate;
use crate::config::{KeyPart, Policy, Table};
use crate::table::SlotRef;

/// Fixed SipHash key: every VM (one per Envoy worker) must map a client to the same slot.
const HASH_KEY: (u64, u64) = (0x7761_736d_6761_7465, 0x7261_7465_6c69_6d69);

/// The parts of a request that keys read, supplied by the adapter (lazily: most policies read
/// one header).
pub trait RequestView {
    /// `:method`, read when a matcher or a key needs it.
    fn method(&self) -> Cow<'_, str>;
    /// `:path` including the query.
    fn path(&self) -> &str;
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
    /// The downstream connection's source address, `ip:port` as Envoy reports it.
    fn source_address(&self) -> Option<String>;
}

/// Which key of a policy produced the value (part of the hash, so that a client id and an IP
/// address with the same text never share a bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Primary,
    Fallback,
}

/// Reads every part of `parts`; `None` if any is missing (or empty).
pub fn key_values(
    parts: &[KeyPart],
    request: &dyn RequestView,
    xff_trusted_hops: u32,
) -> Option<Vec<String>> {
    parts
        .iter()
        .map(|part| match part {
            KeyPart::Header(name) => request
                .header(name)
                .filter(|v| !v.is_empty())
                .map(Cow::into_owned),
            KeyPart::ClientIp => client_ip(request, xff_trusted_hops).map(|ip| ip.to_string()),
            KeyPart::Path => Some(path_only(request.path()).to_owned()),
            KeyPart::Method => Some(request.method().into_owned()),
            KeyPart::Constant(c) => Some(c.clone()),
        })
        .collect()
}

fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The client's address. With `trusted_hops` = N > 0, it is the N-th entry from the right of
/// X-Forwarded-For (each trusted proxy appended the address it saw); if the header has fewer
/// entries, the request did not come through all of them, so the connection's own source is used.
pub fn client_ip(request: &dyn RequestView, trusted_hops: u32) -> Option<IpAddr> {
    if trusted_hops > 0
        && let Some(xff) = request.header("x-forwarded-for")
    {
        let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
        let n = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
        if let Some(entry) = entries.len().checked_sub(n).and_then(|i| entries.get(i)) {
            // A trusted proxy wrote it, so garbage means a broken proxy: no key.
            return parse_ip(entry);
        }
    }
    request.source_address().and_then(|a| parse_ip(&a))
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678` → the address, in canonical form.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .or_else(|_| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or("")
                .parse::<IpAddr>()
        })
        .ok()
        .map(|ip| match ip {
            // An IPv4 client seen on a dual-stack socket is the same client.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        })
}

/// A policy's identity hashed, for each key source: the state `locate` goes on from. The rate is
/// part of the identity: after a configuration change the stored fixed-point values (whose unit
/// depends on the interval) are never read with the wrong unit; the client starts full instead.
/// Worked out once per policy at load, not on every request.
#[derive(Debug, Clone, Copy)]
pub struct PolicyHash {
    primary: SipHasher13,
    fallback: SipHasher13,
}

impl PolicyHash {
    pub fn new(name: &str, rate: &Rate) -> Self {
        let mut h = SipHasher13::new_with_keys(HASH_KEY.0, HASH_KEY.1);
        write_str(&mut h, name);
        h.write_u64(rate.limit);
        h.write_u64(rate.interval_ns);
        h.write_u64(rate.burst);
        let (mut primary, mut fallback) = (h, h);
        primary.write_u8(1);
        fallback.write_u8(2);
        Self { primary, fallback }
    }
}

/// Hashes the policy's identity and the key values to a group and a fingerprint.
pub fn locate(table: &Table, policy: &Policy, source: KeySource, values: &[String]) -> SlotRef {
    let mut h = match source {
        KeySource::Primary => policy.identity.primary,
        KeySource::Fallback => policy.identity.fallback,
    };
    h.write_usize(values.len());
    for v in values {
        write_str(&mut h, v);
    }
    let hash = h.finish128();
    let groups = u64::from(table.groups().max(1));
    let group = hash.h1 % groups;
    SlotRef {
        group_key: group_key(&table.name, group),
        fingerprint: hash.h2.max(1),
    }
}

/// `wasmgate.rate-limit.<table>.<group>`, the shared-data key of a group. Built by hand: this runs
/// on every request, and `format!` costs several times as much in wasm.
fn group_key(table: &str, group: u64) -> String {
    const PREFIX: &str = "wasmgate.rate-limit.";
    let mut number = itoa::Buffer::new();
    let group = number.format(group);
    let mut key = String::with_capacity(PREFIX.len() + table.len() + 1 + group.len());
    key.push_str(PREFIX);
    key.push_str(table);
    key.push('.');
    key.push_str(group);
    key
}

/// Length-prefixed, so ("ab","c") and ("a","bc") differ.
fn write_str(h: &mut SipHasher13, s: &str) {
    h.write_usize(s.len());
    h.write(s.as_bytes());
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A request for tests.
    #[derive(Default, Clone)]
    pub struct FakeRequest {
        pub method: String,
        pub path: String,
        pub headers: HashMap<String, String>,
        pub source: Option<String>,
    }

    impl FakeRequest {
        pub fn new(method: &str, path: &str) -> Self {
            Self {
                method: method.into(),
                path: path.into(),
                source: Some("10.0.0.1:40000".into()),
                ..Self::default()
            }
        }
        pub fn with(mut self, name: &str, value: &str) -> Self {
            self.headers.insert(name.into(), value.into());
            self
        }
    }

    impl RequestView for FakeRequest {
        fn method(&self) -> Cow<'_, str> {
            Cow::Borrowed(&self.method)
        }
        fn path(&self) -> &str {
            &self.path
        }
        fn header(&self, name: &str) -> Option<Cow<'_, str>> {
            self.headers.get(name).map(|v| Cow::Borrowed(v.as_str()))
        }
        fn source_address(&self) -> Option<String> {
            self.source.clone()
        }
    }

    #[test]
    fn client_ip_from_the_connection() {
        let r = FakeRequest::new("GET", "/");
        assert_eq!(client_ip(&r, 0), "10.0.0.1".parse().ok());
        let r = FakeRequest {
            source: Some("[::ffff:10.0.0.2]:1".into()),
            ..r
        };
        assert_eq!(client_ip(&r, 0), "10.0.0.2".parse().ok());
        let r = FakeRequest {
            source: Some("[2001:db8::1]:443".into()),
            ..r
        };
        assert_eq!(client_ip(&r, 0), "2001:db8::1".parse().ok());
    }

    #[test]
    fn client_ip_from_x_forwarded_for_counts_trusted_hops_from_the_right() {
        let r = FakeRequest::new("GET", "/").with("x-forwarded-for", "6.6.6.6, 1.1.1.1, 2.2.2.2");
        // Untrusted by default: a client can write anything in X-Forwarded-For.
        assert_eq!(client_ip(&r, 0), "10.0.0.1".parse().ok());
        assert_eq!(client_ip(&r, 1), "2.2.2.2".parse().ok());
        assert_eq!(client_ip(&r, 2), "1.1.1.1".parse().ok());
        // Fewer entries than trusted hops: the request skipped our proxies.
        assert_eq!(client_ip(&r, 4), "10.0.0.1".parse().ok());
        let bad = FakeRequest::new("GET", "/").with("x-forwarded-for", "1.1.1.1, junk");
        assert_eq!(client_ip(&bad, 1), None);
    }

    #[test]
    fn missing_or_empty_parts_mean_no_key() {
        let parts = vec![KeyPart::Header("x-auth-client-id".into()), KeyPart::Method];
        let r = FakeRequest::new("GET", "/api?q=1");
        assert_eq!(key_values(&parts, &r, 0), None);
        assert_eq!(
            key_values(&parts, &r.clone().with("x-auth-client-id", ""), 0),
            None
        );
        assert_eq!(
            key_values(&parts, &r.with("x-auth-client-id", "123"), 0),
            Some(vec!["123".into(), "GET".into()])
        );
        let all = vec![
            KeyPart::Path,
            KeyPart::Constant("c".into()),
            KeyPart::ClientIp,
        ];
        assert_eq!(
            key_values(&all, &FakeRequest::new("GET", "/api?q=1"), 0),
            Some(vec!["/api".into(), "c".into(), "10.0.0.1".into()])
        );
    }

    fn policy(name: &str) -> Policy {
        crate::config::load(
            format!(
                r#"{{"policies":[{{"name":"{name}","key":["path"],"limit":5,"interval":"1s"}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .policies
        .remove(0)
    }

    #[test]
    fn slots_depend_on_policy_key_and_source_and_stay_in_the_table() {
        let table = Table {
            name: "t".into(),
            slots: 64,
        };
        let a = policy("a");
        let v = |s: &str| vec![s.to_owned()];
        let s1 = locate(&table, &a, KeySource::Primary, &v("123"));
        assert_eq!(
            s1,
            locate(&table, &a, KeySource::Primary, &v("123")),
            "stable"
        );
        assert_ne!(
            s1.fingerprint,
            locate(&table, &a, KeySource::Fallback, &v("123")).fingerprint
        );
        assert_ne!(
            s1.fingerprint,
            locate(&table, &policy("b"), KeySource::Primary, &v("123")).fingerprint
        );
        assert_ne!(
            locate(&table, &a, KeySource::Primary, &["ab".into(), "c".into()]).fingerprint,
            locate(&table, &a, KeySource::Primary, &["a".into(), "bc".into()]).fingerprint
        );
        // The state worked out at load continues to what hashing everything per request gave,
        // so buckets keep their slots across this change.
        let mut scratch = SipHasher13::new_with_keys(HASH_KEY.0, HASH_KEY.1);
        write_str(&mut scratch, "a");
        for n in [a.rate.limit, a.rate.interval_ns, a.rate.burst] {
            scratch.write_u64(n);
        }
        scratch.write_u8(1);
        scratch.write_usize(1);
        write_str(&mut scratch, "123");
        assert_eq!(s1.fingerprint, scratch.finish128().h2.max(1));
        let mut groups = std::collections::HashSet::new();
        for i in 0..10_000 {
            let s = locate(&table, &a, KeySource::Primary, &v(&i.to_string()));
            assert!(s.fingerprint != 0);
            groups.insert(s.group_key);
        }
        assert_eq!(groups.len(), 8, "64 slots = 8 groups, all used");
        let expected: std::collections::HashSet<String> = (0..8)
            .map(|g| format!("wasmgate.rate-limit.t.{g}"))
            .collect();
        assert_eq!(groups, expected);
    }
}
