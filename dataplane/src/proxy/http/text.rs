//! Text that stays in the buffer it arrived in: a request's path and authority.
//!
//! An HTTP/1 head is one buffer; its target and Host value are slices of it. Holding them as
//! `String`s cost two allocations and copies per request; a `Text` is a shared slice of the
//! head's bytes (a reference count), checked to be UTF-8 once, when it is made.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// UTF-8 text in shared bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(Bytes);

impl Text {
    /// `bytes` as text, if they are UTF-8.
    pub fn from_shared(bytes: Bytes) -> Option<Text> {
        std::str::from_utf8(&bytes).ok()?;
        Some(Text(bytes))
    }

    /// `bytes` as text, any byte that is not UTF-8 replaced (as `String::from_utf8_lossy`).
    pub fn from_shared_lossy(bytes: Bytes) -> Text {
        if bytes.is_ascii() {
            return Text(bytes); // the usual case, checked a word at a time
        }
        match std::str::from_utf8(&bytes) {
            Ok(_) => Text(bytes),
            Err(_) => Text::from(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    pub const fn from_static(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor holds UTF-8 only (checked, or from a `str`).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_utf8_and_refuses_or_replaces_the_rest() {
        let buf = Bytes::from_static(b"GET /caf\xc3\xa9 HTTP/1.1");
        let t = Text::from_shared(buf.slice(4..10)).unwrap();
        assert_eq!(t, "/café");
        assert_eq!(t.as_ptr(), buf[4..].as_ptr());
        assert!(Text::from_shared(Bytes::from_static(b"\xff")).is_none());
        assert_eq!(
            Text::from_shared_lossy(Bytes::from_static(b"a\xffb")),
            "a\u{fffd}b"
        );
        assert_eq!(Text::from(String::from("x")).len(), 1);
        assert_eq!(
            format!("{} {:?}", Text::from_static("h"), Text::from("q")),
            "h \"q\""
        );
    }
}
