//! A minimal HTTP/1.1 client for the benchmark's probes (is Envoy answering 200 yet? mint a
//! token). One request per connection, so a probe never reuses a connection from before a
//! restart; the load itself comes from wrk.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Every header line in order, names as sent; a repeated header appears once per line.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The values of every header called `name` (ASCII case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends one request to `addr` and reads the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut message = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        message.push_str(&format!("{name}: {value}\r\n"));
    }
    message.push_str("\r\n");
    // Head and body in one write: a second small write would wait on Nagle's algorithm for
    // the peer's delayed ACK.
    message.push_str(body);
    stream.write_all(message.as_bytes())?;
    let raw =
        read_message(&mut stream).with_context(|| format!("no complete answer from {addr}"))?;
    parse_response(&raw)
}

/// Reads one response, up to its end as its head declares it, without waiting for the close
/// that `connection: close` asks for: Envoy closes a connection after a local reply (a
/// `direct_response`, a filter's 401) only once its delayed-close timeout of 1 s has passed, and
/// a probe that waited for that would time the timeout, not the answer.
fn read_message(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
        if message_complete(&raw) {
            return Ok(raw);
        }
    }
}

/// Whether `raw` holds a whole response: its head, and all of a body sized by `content-length`
/// or ended by chunked encoding's last chunk. A body delimited by the close only ends at EOF.
fn message_complete(raw: &[u8]) -> bool {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    if is_chunked(&head) {
        return body.starts_with(b"0\r\n\r\n") || body.windows(7).any(|w| w == b"\r\n0\r\n\r\n");
    }
    match header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(length) => body.len() >= length,
        None => false,
    }
}

/// The value of the first header called `name` (ASCII case-insensitive) in a response head.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        l.split_once(':')
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    })
}

fn is_chunked(head: &str) -> bool {
    header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("answer without a header end")?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = if is_chunked(head) {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size_line, after) = rest.split_once("\r\n").context("truncated chunk")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size `{size_hex}`"))?;
        if size == 0 {
            return Ok(out);
        }
        let Some(chunk) = after.get(..size) else {
            bail!("truncated chunk");
        };
        out.push_str(chunk);
        rest = after
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .context("chunk without its line end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "[]"));
        let r = parse_response(
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (401, "abcde"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nX-Limit: 7\r\ncontent-length: 0\r\nx-limit: 100\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.header_values("x-limit"), ["7", "100"]);
        assert_eq!(r.header_values("content-length"), ["0"]);
        assert!(r.header_values("x-other").is_empty());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn a_message_ends_where_its_head_says() {
        assert!(!message_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
        ));
        assert!(!message_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n["
        ));
        assert!(message_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
        ));
        assert!(message_complete(
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
        ));
        let chunked =
            b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n";
        assert!(!message_complete(chunked));
        assert!(message_complete(&[&chunked[..], b"0\r\n\r\n"].concat()));
        // Neither length nor chunks: the close ends it.
        assert!(!message_complete(b"HTTP/1.0 200 OK\r\n\r\nbody"));
    }

    #[test]
    fn an_answer_is_read_without_waiting_for_the_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]")
                .unwrap();
            // Like Envoy after a local reply: the connection stays open until the client is done.
            held.recv().unwrap();
        });
        let r = request(addr, "GET", "/", &[], "", Duration::from_secs(30)).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "[]"));
        release.send(()).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn talks_to_a_real_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // TCP may deliver the request in pieces: read until its two-byte body is in.
            let mut raw = Vec::new();
            let mut buf = [0u8; 1024];
            while raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_none_or(|end| raw.len() < end + 4 + 2)
            {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before its body was in");
                raw.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8_lossy(&raw).into_owned();
            conn.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            req
        });
        let r = request(
            addr,
            "POST",
            "/x",
            &[("a", "b")],
            "hi",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (201, "ok"));
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /x HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains("a: b\r\n") && req.ends_with("\r\n\r\nhi"),
            "{req}"
        );
    }
}
