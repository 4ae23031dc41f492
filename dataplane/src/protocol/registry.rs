//! The codecs sluice knows, and protocol detection over a connection's first bytes, so one
//! listener can serve several protocols.

use super::bolt::Bolt;
use super::xprotocol::{Codec, Detection};
use std::sync::Arc;

/// Every built-in codec. A new protocol is one module implementing `Codec` plus one line here.
pub fn builtin() -> Vec<Arc<dyn Codec>> {
    vec![Arc::new(Bolt)]
}

/// The codec registered under `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Codec>> {
    builtin().into_iter().find(|c| c.name() == name)
}

/// The names of every built-in codec, for error messages.
pub fn names() -> Vec<&'static str> {
    builtin().iter().map(|c| c.name()).collect()
}

/// The result of looking at a connection's first bytes.
pub enum Detected {
    Codec(Arc<dyn Codec>),
    /// None of the codecs claims these bytes.
    Unknown,
    NeedMore,
}

/// Asks each codec in turn; the first match wins. "Need more" from any codec that has not ruled
/// itself out defers the decision until more bytes arrive.
pub fn detect(codecs: &[Arc<dyn Codec>], prefix: &[u8]) -> Detected {
    let mut need_more = false;
    for c in codecs {
        match c.detect(prefix) {
            Detection::Match => return Detected::Codec(c.clone()),
            Detection::NeedMore => need_more = true,
            Detection::NoMatch => {}
        }
    }
    if need_more {
        Detected::NeedMore
    } else {
        Detected::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bolt_is_detected_from_its_first_bytes() {
        let codecs = builtin();
        assert!(matches!(detect(&codecs, &[]), Detected::NeedMore));
        assert!(matches!(detect(&codecs, &[1]), Detected::NeedMore));
        assert!(matches!(detect(&codecs, &[1, 1]), Detected::Codec(c) if c.name() == "bolt"));
        assert!(matches!(detect(&codecs, &[2, 2, 0]), Detected::Codec(_)));
        assert!(matches!(
            detect(&codecs, b"GET / HTTP/1.1"),
            Detected::Unknown
        ));
        assert!(matches!(detect(&codecs, &[0xda, 0xbb]), Detected::Unknown));
        assert!(by_name("bolt").is_some());
        assert!(by_name("dubbo").is_none());
    }
}
