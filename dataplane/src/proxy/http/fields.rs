//! The header fields of a request or response head in the stream model: an ordered list of
//! (name, value) pairs with the part of `http::HeaderMap`'s interface the proxy uses.
//!
//! Why not `http::HeaderMap` itself: a head has a dozen fields or so, and for that few a list
//! scanned in order is cheaper than a hash map — no hashing of every name on insert, one
//! allocation instead of two, a cheap drop — and it keeps the fields in the order they arrived
//! in, as Envoy forwards them. The map was 15-20% of the user-space instructions of an
//! HTTP/1.1 request (callgrind). HTTP/2 heads are converted at the `h2` crate's edge, which
//! speaks `HeaderMap`; trailers stay `HeaderMap`s.
//!
//! Names are `http::HeaderName`s (lower-case, validated; a standard name compares as one
//! integer), values `http::HeaderValue`s (sharing the codec's buffer).

use crate::protocol::http1;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// What a field can be looked up by: a `HeaderName`, or a name as a string (any case).
pub trait FieldKey {
    fn is(&self, name: &HeaderName) -> bool;
}

impl FieldKey for HeaderName {
    fn is(&self, name: &HeaderName) -> bool {
        self == name
    }
}

impl FieldKey for &HeaderName {
    fn is(&self, name: &HeaderName) -> bool {
        *self == name
    }
}

impl FieldKey for &str {
    fn is(&self, name: &HeaderName) -> bool {
        name.as_str().eq_ignore_ascii_case(self)
    }
}

impl FieldKey for &String {
    fn is(&self, name: &HeaderName) -> bool {
        name.as_str().eq_ignore_ascii_case(self)
    }
}

/// What a field can be set by: a `HeaderName`, or a lower-case `&'static str` literal (as
/// `http::HeaderMap` takes them; an invalid literal is a bug and panics).
pub trait IntoFieldName {
    fn into_name(self) -> HeaderName;
}

impl IntoFieldName for HeaderName {
    fn into_name(self) -> HeaderName {
        self
    }
}

impl IntoFieldName for &'static str {
    fn into_name(self) -> HeaderName {
        HeaderName::from_static(self)
    }
}

/// A head's fields in arrival order; a name may appear more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    list: Vec<(HeaderName, HeaderValue)>,
}

impl Fields {
    pub fn new() -> Fields {
        Fields::default()
    }

    pub fn with_capacity(n: usize) -> Fields {
        Fields {
            list: Vec::with_capacity(n),
        }
    }

    /// How many fields (each value of a repeated name counts).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first value of `key`.
    pub fn get<K: FieldKey>(&self, key: K) -> Option<&HeaderValue> {
        self.list.iter().find(|(n, _)| key.is(n)).map(|(_, v)| v)
    }

    /// Every value of `key`, in order.
    pub fn get_all<K: FieldKey>(&self, key: K) -> impl Iterator<Item = &HeaderValue> {
        self.list
            .iter()
            .filter(move |(n, _)| key.is(n))
            .map(|(_, v)| v)
    }

    pub fn contains_key<K: FieldKey>(&self, key: K) -> bool {
        self.list.iter().any(|(n, _)| key.is(n))
    }

    /// Sets `name` to `value` alone: the first field of that name keeps its place with the new
    /// value, later ones go. Returns the first old value.
    pub fn insert(&mut self, name: impl IntoFieldName, value: HeaderValue) -> Option<HeaderValue> {
        let name = name.into_name();
        let Some(at) = self.list.iter().position(|(n, _)| *n == name) else {
            self.list.push((name, value));
            return None;
        };
        let old = std::mem::replace(&mut self.list[at].1, value);
        let mut i = at + 1;
        while i < self.list.len() {
            if self.list[i].0 == name {
                self.list.remove(i);
            } else {
                i += 1;
            }
        }
        Some(old)
    }

    /// Adds a field after the others, whether or not the name is there already.
    pub fn append(&mut self, name: impl IntoFieldName, value: HeaderValue) {
        self.list.push((name.into_name(), value));
    }

    /// Removes every field of `key`; returns the first value.
    pub fn remove<K: FieldKey>(&mut self, key: K) -> Option<HeaderValue> {
        let mut first = None;
        self.list.retain_mut(|(n, v)| {
            if !key.is(n) {
                return true;
            }
            if first.is_none() {
                first = Some(std::mem::replace(v, HeaderValue::from_static("")));
            }
            false
        });
        first
    }

    /// Keeps the fields `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&HeaderName, &HeaderValue) -> bool) {
        self.list.retain(|(n, v)| keep(n, v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.list.iter().map(|(n, v)| (n, v))
    }

    /// The fields as an `http::HeaderMap` (for the `h2` crate).
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.list.len());
        for (n, v) in &self.list {
            map.append(n.clone(), v.clone());
        }
        map
    }

    pub fn into_map(self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.list.len());
        for (n, v) in self.list {
            map.append(n, v);
        }
        map
    }
}

/// A field name from an HTTP/1 head (a token, as httparse checked), in any case. The names
/// most messages carry are told apart by length and first letter and compared in place,
/// without the lower-cased copy and table walk of `HeaderName::from_bytes` (the other names
/// go there).
pub fn parsed_name(raw: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    use http::header as h;
    static KNOWN: [(&[u8], HeaderName); 14] = [
        (b"host", h::HOST),
        (b"date", h::DATE),
        (b"accept", h::ACCEPT),
        (b"server", h::SERVER),
        (b"cookie", h::COOKIE),
        (b"user-agent", h::USER_AGENT),
        (b"connection", h::CONNECTION),
        (b"content-type", h::CONTENT_TYPE),
        (b"cache-control", h::CACHE_CONTROL),
        (b"authorization", h::AUTHORIZATION),
        (b"content-length", h::CONTENT_LENGTH),
        (b"accept-encoding", h::ACCEPT_ENCODING),
        (
            b"x-forwarded-for",
            HeaderName::from_static("x-forwarded-for"),
        ),
        (b"transfer-encoding", h::TRANSFER_ENCODING),
    ];
    let Some(&first) = raw.first() else {
        return HeaderName::from_bytes(raw);
    };
    let at = match (raw.len(), first | 0x20) {
        (4, b'h') => 0,
        (4, b'd') => 1,
        (6, b'a') => 2,
        (6, b's') => 3,
        (6, b'c') => 4,
        (10, b'u') => 5,
        (10, b'c') => 6,
        (12, b'c') => 7,
        (13, b'c') => 8,
        (13, b'a') => 9,
        (14, b'c') => 10,
        (15, b'a') => 11,
        (15, b'x') => 12,
        (17, b't') => 13,
        _ => return HeaderName::from_bytes(raw),
    };
    let (lower, name) = &KNOWN[at];
    if http1::token_is(raw, lower) {
        Ok(name.clone())
    } else {
        HeaderName::from_bytes(raw)
    }
}

/// A field value from an HTTP/1 head (an `http1::HeaderBlock`), kept in the head's buffer.
///
/// httparse admitted only the bytes a `HeaderValue` allows (HTAB, SP to `~`, obs-text), so an
/// ASCII value skips the byte-by-byte check `HeaderValue` would make again — a tenth of the
/// instructions of reading an HTTP/1 head. A value with obs-text takes the checked path.
pub fn parsed_value(value: Bytes) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    if value.is_ascii() {
        // SAFETY: the contract asks for UTF-8, which ASCII is; and no byte `HeaderValue`
        // refuses got through httparse (see above).
        Ok(unsafe { HeaderValue::from_maybe_shared_unchecked(value) })
    } else {
        HeaderValue::from_maybe_shared(value)
    }
}

impl From<HeaderMap> for Fields {
    fn from(map: HeaderMap) -> Fields {
        let mut list = Vec::with_capacity(map.len());
        let mut last: Option<HeaderName> = None;
        for (n, v) in map {
            // A `None` name is another value of the name before it.
            let name = match n {
                Some(n) => {
                    last = Some(n.clone());
                    n
                }
                None => match &last {
                    Some(n) => n.clone(),
                    None => continue,
                },
            };
            list.push((name, v));
        }
        Fields { list }
    }
}

/// `fields["name"]`: the first value; panics when there is none (as `HeaderMap` does).
impl std::ops::Index<&str> for Fields {
    type Output = HeaderValue;
    fn index(&self, key: &str) -> &HeaderValue {
        self.get(key)
            .unwrap_or_else(|| panic!("no field named {key}"))
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a HeaderName, &'a HeaderValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (HeaderName, HeaderValue)>,
        fn(&'a (HeaderName, HeaderValue)) -> (&'a HeaderName, &'a HeaderValue),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter().map(|(n, v)| (n, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    fn n(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }

    #[test]
    fn insert_replaces_every_value_in_the_first_place() {
        let mut f = Fields::new();
        f.append(n("a"), v("1"));
        f.append(n("b"), v("2"));
        f.append(n("a"), v("3"));
        assert_eq!(f.insert(n("a"), v("4")), Some(v("1")));
        let got: Vec<_> = f.iter().map(|(k, x)| (k.as_str(), x.clone())).collect();
        assert_eq!(got, vec![("a", v("4")), ("b", v("2"))]);
        assert_eq!(f.insert(n("c"), v("5")), None);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn lookups_by_name_or_string_in_any_case() {
        let mut f = Fields::new();
        f.append(http::header::CONTENT_TYPE, v("text/plain"));
        f.append(n("x-multi"), v("1"));
        f.append(n("x-multi"), v("2"));
        assert_eq!(f.get("Content-Type"), Some(&v("text/plain")));
        assert_eq!(f.get(http::header::CONTENT_TYPE), Some(&v("text/plain")));
        assert_eq!(
            f.get_all("x-multi").collect::<Vec<_>>(),
            vec![&v("1"), &v("2")]
        );
        assert!(f.contains_key("X-MULTI"));
        assert_eq!(f.remove("x-multi"), Some(v("1")));
        assert!(!f.contains_key("x-multi"));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn names_from_the_wire_are_lower_cased_known_or_not() {
        for (raw, want) in [
            ("Host", "host"),
            ("CONTENT-LENGTH", "content-length"),
            ("X-Forwarded-For", "x-forwarded-for"),
            ("Hast", "hast"),
            ("content-lengtx", "content-lengtx"),
            ("X-Custom", "x-custom"),
        ] {
            assert_eq!(parsed_name(raw.as_bytes()).unwrap().as_str(), want);
        }
        assert!(parsed_name(b"").is_err());
        // Token bytes that bit 5 would fold onto a letter's case are not taken for it.
        assert_eq!(
            parsed_name(b"Content_Length").unwrap().as_str(),
            "content_length"
        );
        assert_eq!(
            parsed_name(b"x-forwarded^for").unwrap().as_str(),
            "x-forwarded^for"
        );
        assert!(http1::token_is(b"TRANSFER-ENCODING", b"transfer-encoding"));
        assert!(!http1::token_is(b"TRANSFER-ENCODINH", b"transfer-encoding"));
        assert!(!http1::token_is(b"TRANSFER_ENCODING", b"transfer-encoding"));
        assert!(parsed_name(b"bad name").is_err());
        assert!(parsed_name(b"Ho\x00t").is_err());
    }

    #[test]
    fn round_trips_through_a_header_map_with_repeated_names() {
        let mut f = Fields::new();
        f.append(n("a"), v("1"));
        f.append(n("a"), v("2"));
        f.append(n("b"), v("3"));
        let back = Fields::from(f.to_map());
        assert_eq!(back, f);
        assert_eq!(f.clone().into_map().get_all("a").iter().count(), 2);
    }
}
