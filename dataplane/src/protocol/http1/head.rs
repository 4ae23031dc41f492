//! Request and response heads, parsed by `httparse` and kept as the bytes that arrived plus
//! ranges into them: parsing a head copies nothing and allocates one small index.

use super::{Http1Error, Limits};
use bytes::Bytes;
use std::mem::MaybeUninit;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Header fields as they arrived: the raw block and (name, value) ranges into it, in order,
/// duplicates kept.
#[derive(Clone, Debug, Default)]
pub struct HeaderBlock {
    raw: Bytes,
    fields: Vec<(Range<u32>, Range<u32>)>,
    /// Which of [`WATCHED`] appear (bit i for name i).
    seen: u8,
}

/// Names the codec and the proxy look up in every message. Which of them a block holds is
/// noted while it is indexed, so a lookup of an absent one (most of them, most of the time)
/// scans nothing.
const WATCHED: [&str; 6] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
];

/// Whether `raw`, a token (as httparse lets through in a field name), is `lower` (lower-case
/// letters and `-`) in any case. Setting bit 5 lower-cases a letter and leaves `-` and digits
/// as they are; the only other token bytes it changes (`^`, `_`) become bytes no such name
/// has. Eight bytes are compared at a time.
pub fn token_is(raw: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = 0x2020_2020_2020_2020;
    let n = raw.len();
    if n != lower.len() {
        return false;
    }
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    if n >= 8 {
        // The first eight and the last eight bytes (overlapping when fewer than 16).
        return (word(raw, 0) | CASE) == word(lower, 0)
            && (word(raw, n - 8) | CASE) == word(lower, n - 8)
            && (n <= 16 || token_is(&raw[8..n - 8], &lower[8..n - 8]));
    }
    raw.iter().zip(lower).all(|(r, l)| (r | 0x20) == *l)
}

/// Where `name` (any case) is in [`WATCHED`], told apart by length and first letter.
fn watched_index(name: &[u8]) -> Option<usize> {
    let i = match (name.len(), name.first()? | 0x20) {
        (10, b'c') => 0,
        (14, b'c') => 1,
        (17, b't') => 2,
        (6, b'e') => 3,
        (7, b'u') => 4,
        (2, b't') => 5,
        _ => return None,
    };
    Some(i)
}

/// The bit of a field's `name` (as sent, any case) among [`WATCHED`], 0 for any other name.
fn watched_bit(name: &[u8]) -> u8 {
    match watched_index(name) {
        Some(i) if token_is(name, WATCHED[i].as_bytes()) => 1 << i,
        _ => 0,
    }
}

/// The bit of a name looked up (the proxy asks in lower case; another case is simply
/// scanned for), 0 for a name not watched.
fn lookup_bit(name: &[u8]) -> u8 {
    match watched_index(name) {
        Some(i) if name == WATCHED[i].as_bytes() => 1 << i,
        _ => 0,
    }
}

impl HeaderBlock {
    fn range(&self, r: &Range<u32>) -> &[u8] {
        &self.raw[r.start as usize..r.end as usize]
    }

    /// Every field, in order: (name as sent, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|(n, v)| (self.range(n), self.range(v)))
    }

    /// A range of the head as a slice of its own buffer (no copy).
    fn shared(&self, r: &Range<u32>) -> Bytes {
        self.raw.slice(r.start as usize..r.end as usize)
    }

    /// Every field, in order: (name as sent, value as a slice of the head's own buffer, so
    /// a header map can hold it without copying).
    pub fn iter_shared(&self) -> impl Iterator<Item = (&[u8], Bytes)> + '_ {
        self.fields
            .iter()
            .map(|(n, v)| (self.range(n), self.shared(v)))
    }

    /// The fields worth scanning for `name`: none when it is a watched name the block lacks.
    fn candidates(&self, name: &str) -> &[(Range<u32>, Range<u32>)] {
        let bit = lookup_bit(name.as_bytes());
        if bit != 0 && self.seen & bit == 0 {
            &[]
        } else {
            &self.fields
        }
    }

    /// The values of every field named `name` (ASCII case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.candidates(name)
            .iter()
            .map(|(n, v)| (self.range(n), self.range(v)))
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.candidates(name)
            .iter()
            .map(|(n, v)| (self.range(n), self.range(v)))
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether a comma-separated field (`Connection`, `Expect`) lists `token`.
    pub fn lists(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Whether a message of `version` with these fields keeps its connection open: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    fn keep_alive(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.lists("connection", "close"),
            Version::Http10 => self.lists("connection", "keep-alive"),
        }
    }

    /// The index of httparse's borrowed `headers` over `buf`, without the bytes yet (see
    /// [`HeaderBlock::attach`]).
    fn index(buf: &[u8], headers: &[httparse::Header<'_>]) -> HeaderBlock {
        let mut seen = 0;
        let fields = headers
            .iter()
            .map(|h| {
                seen |= watched_bit(h.name.as_bytes());
                (offsets(buf, h.name.as_bytes()), offsets(buf, h.value))
            })
            .collect();
        HeaderBlock {
            raw: Bytes::new(),
            fields,
            seen,
        }
    }

    /// Hands an index its bytes: the buffer it was made over, from the same start.
    pub(super) fn attach(&mut self, raw: Bytes) {
        self.raw = raw;
    }

    /// Reads a trailer block (`field CRLF ... CRLF`) that is complete in `raw`.
    pub(super) fn parse_trailers(raw: Bytes, limits: &Limits) -> Result<HeaderBlock, Http1Error> {
        with_slots(limits, |slots| match httparse::parse_headers(&raw, slots) {
            Ok(httparse::Status::Complete((_, fields))) => {
                check_count(fields.len(), limits)?;
                let mut block = HeaderBlock::index(&raw, fields);
                block.attach(raw.clone());
                Ok(block)
            }
            Ok(httparse::Status::Partial) => Err(Http1Error::bad_request("truncated trailers")),
            Err(httparse::Error::TooManyHeaders) => Err(Http1Error::too_large(format!(
                "more than {} trailer fields",
                limits.max_headers
            ))),
            Err(e) => Err(Http1Error::bad_request(format!("invalid trailers: {e}"))),
        })
    }
}

/// A request line and its headers.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub headers: HeaderBlock,
    method: Range<u32>,
    target: Range<u32>,
    pub version: Version,
}

impl RequestHead {
    pub fn method(&self) -> &str {
        // httparse accepts only token characters in a method: ASCII.
        std::str::from_utf8(self.headers.range(&self.method)).unwrap_or("")
    }

    /// The request target as sent: origin-form (`/path?q`), absolute-form
    /// (`http://host/path`), authority-form (CONNECT) or `*`.
    pub fn target(&self) -> &[u8] {
        self.headers.range(&self.target)
    }

    /// The target as a slice of the head's own buffer (no copy).
    pub fn target_shared(&self) -> Bytes {
        self.headers.shared(&self.target)
    }

    /// Whether the connection stays open after this exchange, as the client asks.
    pub fn keep_alive(&self) -> bool {
        self.headers.keep_alive(self.version)
    }

    /// `Expect: 100-continue` (HTTP/1.1 only: a 1.0 client cannot read a 100).
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11 && self.headers.lists("expect", "100-continue")
    }
}

/// A status line and its headers.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub headers: HeaderBlock,
    pub status: u16,
    reason: Range<u32>,
    pub version: Version,
}

impl ResponseHead {
    pub fn reason(&self) -> &[u8] {
        self.headers.range(&self.reason)
    }

    /// Whether the connection stays open after this exchange, as the server says.
    pub fn keep_alive(&self) -> bool {
        self.headers.keep_alive(self.version)
    }
}

/// Runs `f` with room for one more header slot than `limits` allow, so that "too many" is seen
/// as httparse's TooManyHeaders. Up to 127 allowed fields the slots live on the stack.
fn with_slots<'b, T>(limits: &Limits, f: impl FnOnce(&mut [httparse::Header<'b>]) -> T) -> T {
    const STACK: usize = 128;
    let n = limits.max_headers + 1;
    if n <= STACK {
        let mut slots = [httparse::EMPTY_HEADER; STACK];
        f(&mut slots[..n])
    } else {
        let mut slots = vec![httparse::EMPTY_HEADER; n];
        f(&mut slots)
    }
}

/// As [`with_slots`], with the slots left uninitialised for the parsers that take them so: a
/// head's parse then costs no 4 KiB of zeroing first.
fn with_uninit_slots<'b, T>(
    limits: &Limits,
    f: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> T,
) -> T {
    const STACK: usize = 128;
    let n = limits.max_headers + 1;
    if n <= STACK {
        let mut slots = [const { MaybeUninit::uninit() }; STACK];
        f(&mut slots[..n])
    } else {
        let mut slots: Vec<httparse::Header<'b>> = Vec::with_capacity(n);
        f(&mut slots.spare_capacity_mut()[..n])
    }
}

/// httparse fills at most the slots it is given, one more than allowed: a full set is one
/// field too many.
fn check_count(n: usize, limits: &Limits) -> Result<(), Http1Error> {
    if n > limits.max_headers {
        return Err(Http1Error::too_large(format!(
            "more than {} header fields",
            limits.max_headers
        )));
    }
    Ok(())
}

fn version(v: Option<u8>) -> Version {
    if v == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    }
}

fn head_error(e: httparse::Error, raw: &[u8], limits: &Limits, what: &str) -> Http1Error {
    match e {
        // `GET / HTTP/2.0` over HTTP/1 framing: Envoy answers 426 (anything else that is not
        // a version, such as a space in the target, is a plain 400).
        httparse::Error::Version if names_a_version(raw) => Http1Error {
            status: 426,
            reason: format!("{what}: unsupported HTTP version"),
        },
        httparse::Error::TooManyHeaders => {
            Http1Error::too_large(format!("more than {} header fields", limits.max_headers))
        }
        e => Http1Error::bad_request(format!("invalid {what}: {e}")),
    }
}

/// Whether the first line is three words, the last `HTTP/<digit>.<digit>` (a version httparse
/// does not speak, rather than a malformed line).
fn names_a_version(raw: &[u8]) -> bool {
    let line = raw.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    matches!(words.as_slice(), [_, _, [b'H', b'T', b'T', b'P', b'/', a, b'.', b]]
        if a.is_ascii_digit() && b.is_ascii_digit())
}

/// Parses the request head that starts `buf`: `None` while it is incomplete, else the head
/// and its length. The head's fields index `buf` from its start; the caller hands the head its
/// bytes ([`RequestHead::attach`]) once it has split them off.
pub(super) fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, Http1Error> {
    with_uninit_slots(limits, |slots| {
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, slots) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(head_error(e, buf, limits, "request head")),
        };
        check_count(req.headers.len(), limits)?;
        let headers = HeaderBlock::index(buf, req.headers);
        let (Some(method), Some(path)) = (req.method, req.path) else {
            return Err(Http1Error::bad_request("incomplete request line"));
        };
        if path.is_empty() {
            return Err(Http1Error::bad_request("empty request target"));
        }
        if !path.is_ascii() {
            // httparse lets bytes above 0x7f through (obs-text); a URI has none (RFC 3986), and
            // Envoy's codec refuses them too.
            return Err(Http1Error::bad_request(
                "non-ASCII byte in the request target",
            ));
        }
        let head = RequestHead {
            method: offsets(buf, method.as_bytes()),
            target: offsets(buf, path.as_bytes()),
            version: version(req.version),
            headers,
        };
        Ok(Some((head, len)))
    })
}

/// Parses the response head that starts `buf`, as [`parse_request`] does a request's.
pub(super) fn parse_response(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(ResponseHead, usize)>, Http1Error> {
    with_uninit_slots(limits, |slots| {
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(head_error(e, &[], limits, "response head")),
        };
        check_count(resp.headers.len(), limits)?;
        let headers = HeaderBlock::index(buf, resp.headers);
        let reason = match resp.reason {
            Some(r) if !r.is_empty() => offsets(buf, r.as_bytes()),
            _ => 0..0,
        };
        let head = ResponseHead {
            status: resp.code.unwrap_or(0),
            reason,
            version: version(resp.version),
            headers,
        };
        Ok(Some((head, len)))
    })
}

/// Where `part`, a slice of `buf`, lies in it.
fn offsets(buf: &[u8], part: &[u8]) -> Range<u32> {
    let start = (part.as_ptr() as usize - buf.as_ptr() as usize) as u32;
    start..start + part.len() as u32
}

/// Where the head that starts `buf` ends (just past its empty line), scanning only from
/// `from`: a head arriving a byte at a time is searched once overall, not once per byte.
/// Accepts the bare-LF endings httparse accepts.
pub(super) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(i) = memchr::memchr(b'\n', &buf[at..]) {
        let nl = at + i;
        // An empty line is "\n" right after the previous "\n" (optionally with "\r" between).
        if nl >= 1 && buf[nl - 1] == b'\n' {
            return Some(nl + 1);
        }
        if nl >= 2 && buf[nl - 1] == b'\r' && buf[nl - 2] == b'\n' {
            return Some(nl + 1);
        }
        at = nl + 1;
    }
    None
}
