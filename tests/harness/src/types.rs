//! Plain values the tests build and read: header lists, callouts, responses.

use std::time::Duration;

/// An ordered header (or trailer) list; names compare case-insensitively, as in HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// Envoy's `replace`: sets the first occurrence and drops the others; adds if absent.
    pub(crate) fn replace(&mut self, name: &str, value: String) {
        let mut seen = false;
        self.0.retain_mut(|(k, v)| {
            if !k.eq_ignore_ascii_case(name) {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = value.clone();
            true
        });
        if !seen {
            self.0.push((name.to_owned(), value));
        }
    }

    pub(crate) fn add(&mut self, name: &str, value: String) {
        self.0.push((name.to_owned(), value));
    }
}

/// A request or response as it leaves the filter: what the next filter or the upstream gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl Message {
    /// Shortcut for `headers.get(name)`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response the filter sent itself (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    /// `status_code_details` (Envoy's response code details), often empty.
    pub details: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// -1 unless the filter answered as gRPC.
    pub grpc_status: i32,
}

impl LocalResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP callout the filter dispatched (`proxy_http_call`), waiting for the test's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub token: u32,
    /// The context that dispatched it (the root context or a stream).
    pub context_id: u32,
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout: Duration,
    /// The host clock (ns since the epoch) when it was dispatched: with `timeout`, its deadline.
    pub dispatched_at_nanos: u64,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// The test's answer to a callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl CallResponse {
    /// A response with `:status` set.
    pub fn new(status: u16) -> Self {
        Self {
            headers: Headers(vec![(":status".to_owned(), status.to_string())]),
            body: Vec::new(),
            trailers: Headers::default(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name, value.to_owned());
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_position_and_drops_duplicates() {
        let mut h = Headers::from_pairs(&[("a", "1"), ("B", "2"), ("c", "3"), ("b", "4")]);
        h.replace("b", "x".to_owned());
        assert_eq!(
            h,
            Headers::from_pairs(&[("a", "1"), ("B", "x"), ("c", "3")])
        );
        h.replace("d", "y".to_owned());
        assert_eq!(h.get("D"), Some("y"));
        h.remove("A");
        assert_eq!(h.get_all("a"), Vec::<&str>::new());
    }
}
