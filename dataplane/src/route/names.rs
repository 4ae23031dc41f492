//! Virtual hosts found by name, as Envoy finds them by domain: an exact name first, then the
//! longest suffix wildcard (`*.example.com`, `*-svc`), then the longest prefix wildcard
//! (`example.*`), then `*`. A wildcard stands for at least one character. Among patterns of the
//! same kind and length the first configured wins. rpc_proxy looks up service names here;
//! HTTP will look up hosts (lower-cased, port stripped) the same way.

use crate::fasthash::FastMap;

/// Names and patterns, each leading to a `T` (a virtual host index, typically).
#[derive(Debug)]
pub struct NameTable<T> {
    exact: FastMap<String, T>,
    /// (what follows the `*`, T), longest first.
    suffixes: Vec<(String, T)>,
    /// (what precedes the `*`, T), longest first.
    prefixes: Vec<(String, T)>,
    any: Option<T>,
}

/// What kind of pattern a configured name is.
#[derive(Debug, PartialEq, Eq)]
pub enum Pattern<'a> {
    Exact(&'a str),
    Suffix(&'a str),
    Prefix(&'a str),
    Any,
}

impl<'a> Pattern<'a> {
    /// Reads a configured name; `Err` for a `*` anywhere but first or last, or two of them.
    pub fn parse(name: &'a str) -> Result<Pattern<'a>, String> {
        if name == "*" {
            return Ok(Pattern::Any);
        }
        let stars = name.matches('*').count();
        let p = if let Some(rest) = name.strip_prefix('*') {
            Pattern::Suffix(rest)
        } else if let Some(rest) = name.strip_suffix('*') {
            Pattern::Prefix(rest)
        } else {
            Pattern::Exact(name)
        };
        match (&p, stars) {
            (Pattern::Exact(_), 0) | (Pattern::Suffix(_) | Pattern::Prefix(_), 1) => Ok(p),
            _ => Err(format!(
                "\"{name}\": a wildcard may only be the first or the last character, once"
            )),
        }
    }
}

impl<T: Clone> Default for NameTable<T> {
    fn default() -> Self {
        NameTable {
            exact: FastMap::default(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
        }
    }
}

impl<T: Clone> NameTable<T> {
    /// Adds `name` (exact or pattern) leading to `to`; a name added twice keeps its first.
    pub fn insert(&mut self, name: &str, to: T) -> Result<(), String> {
        match Pattern::parse(name)? {
            Pattern::Exact(n) => {
                self.exact.entry(n.to_string()).or_insert(to);
            }
            Pattern::Suffix(s) => insert_by_length(&mut self.suffixes, s, to),
            Pattern::Prefix(p) => insert_by_length(&mut self.prefixes, p, to),
            Pattern::Any => {
                self.any.get_or_insert(to);
            }
        }
        Ok(())
    }

    /// What `name` leads to; `None` names no host (not even through `*`).
    pub fn find(&self, name: Option<&str>) -> Option<&T> {
        if let Some(n) = name {
            if let Some(t) = self.exact.get(n) {
                return Some(t);
            }
            let hit = self
                .suffixes
                .iter()
                .find(|(s, _)| n.len() > s.len() && n.ends_with(s.as_str()))
                .or_else(|| {
                    self.prefixes
                        .iter()
                        .find(|(p, _)| n.len() > p.len() && n.starts_with(p.as_str()))
                });
            if let Some((_, t)) = hit {
                return Some(t);
            }
        }
        self.any.as_ref()
    }
}

/// Keeps `list` longest first, the earlier of two equally long ones first.
fn insert_by_length<T>(list: &mut Vec<(String, T)>, s: &str, to: T) {
    if list.iter().any(|(x, _)| x == s) {
        return;
    }
    let at = list.partition_point(|(x, _)| x.len() >= s.len());
    list.insert(at, (s.to_string(), to));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> NameTable<usize> {
        let mut t = NameTable::default();
        for (i, n) in names.iter().enumerate() {
            t.insert(n, i).unwrap();
        }
        t
    }

    #[test]
    fn exact_then_longest_suffix_then_longest_prefix_then_any() {
        let t = table(&[
            "*",
            "api.example.com",
            "*.com",
            "*.example.com",
            "api.*",
            "api.example.*",
            "*-canary",
        ]);
        let f = |n: &str| t.find(Some(n)).copied();
        assert_eq!(f("api.example.com"), Some(1));
        assert_eq!(f("www.example.com"), Some(3)); // longer suffix beats *.com
        assert_eq!(f("foo.com"), Some(2));
        assert_eq!(f("api.example.org"), Some(5)); // longer prefix beats api.*
        assert_eq!(f("api.other.org"), Some(4));
        assert_eq!(f("api.example.com-canary"), Some(6)); // suffixes before prefixes
        assert_eq!(f("elsewhere"), Some(0));
        assert_eq!(t.find(None).copied(), Some(0));
        // A wildcard stands for at least one character.
        assert_eq!(table(&["*.example.com"]).find(Some(".example.com")), None);
        assert_eq!(table(&["svc*"]).find(Some("svc")), None);
    }

    #[test]
    fn misplaced_wildcards_are_refused_and_duplicates_keep_the_first() {
        for bad in ["a*b", "**", "*a*", "a**"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        let t = table(&["*.a", "*.a", "x", "x"]);
        assert_eq!(t.find(Some("b.a")).copied(), Some(0));
        assert_eq!(t.find(Some("x")).copied(), Some(2));
    }
}
