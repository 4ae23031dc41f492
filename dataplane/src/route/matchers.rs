//! What a string or header matcher accepts (Envoy's StringMatcher and HeaderMatcher). The
//! config types live in `config::route_model`; their meaning lives here, once for every
//! protocol.

use crate::config::{HeaderMatch, StringMatch};

impl StringMatch {
    /// Regexes are anchored when read, so they match the whole value, as Envoy's safe_regex.
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StringMatch::Exact(x) => v == x,
            StringMatch::Prefix(x) => v.starts_with(x.as_str()),
            StringMatch::Suffix(x) => v.ends_with(x.as_str()),
            StringMatch::Contains(x) => v.contains(x.as_str()),
            StringMatch::Regex(r) => r.is_match(v),
            StringMatch::NoCase(inner) => inner.matches(&v.to_ascii_lowercase()),
        }
    }
}

impl HeaderMatch {
    /// Whether a request whose field `self.name` has `value` (`None`: absent) passes: present
    /// (and matching, if a matcher is given), then inverted if asked. An absent field never
    /// matches, so an inverted matcher accepts it.
    pub fn accepts(&self, value: Option<&[u8]>) -> bool {
        let value = value.or(self.missing_as_empty.then_some(&b""[..]));
        let hit = match (&self.matcher, &self.range, value) {
            (_, _, None) => false,
            (_, Some(range), Some(v)) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .is_some_and(|n| range.contains(&n)),
            (None, None, Some(_)) => true,
            (Some(m), None, Some(v)) => m.matches(&String::from_utf8_lossy(v)),
        };
        hit != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(matcher: Option<StringMatch>, invert: bool) -> HeaderMatch {
        HeaderMatch {
            name: "x".into(),
            matcher,
            range: None,
            invert,
            missing_as_empty: false,
        }
    }

    #[test]
    fn presence_value_and_inversion() {
        let present = header(None, false);
        assert!(present.accepts(Some(b"")));
        assert!(!present.accepts(None));
        let absent = header(None, true);
        assert!(absent.accepts(None) && !absent.accepts(Some(b"v")));
        let prefix = header(Some(StringMatch::Prefix("gz".into())), false);
        assert!(prefix.accepts(Some(b"gz01")) && !prefix.accepts(Some(b"sh01")));
        let not_prefix = header(Some(StringMatch::Prefix("gz".into())), true);
        assert!(not_prefix.accepts(Some(b"sh01")) && not_prefix.accepts(None));
    }
}
