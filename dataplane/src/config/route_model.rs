//! What routes send to and match on, shared by the filters that route: cluster targets
//! (single or weighted), header and string matchers, retry policy.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum TcpRoute {
    Cluster(String),
    Weighted(Vec<WeightedCluster>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    pub name: String,
    /// `None`: the header only has to be present.
    pub matcher: Option<StringMatch>,
    /// `range_match`: the value is an integer in `start..end`.
    pub range: Option<std::ops::Range<i64>>,
    pub invert: bool,
    /// A missing header is matched as an empty value (Envoy's treat_missing_header_as_empty).
    pub missing_as_empty: bool,
}

#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(regex::Regex),
    /// `ignore_case: true`: the inner pattern is lower-case and the value is lowered to match.
    NoCase(Box<StringMatch>),
}

impl PartialEq for StringMatch {
    fn eq(&self, other: &Self) -> bool {
        use StringMatch::*;
        match (self, other) {
            (Exact(a), Exact(b))
            | (Prefix(a), Prefix(b))
            | (Suffix(a), Suffix(b))
            | (Contains(a), Contains(b)) => a == b,
            (Regex(a), Regex(b)) => a.as_str() == b.as_str(),
            (NoCase(a), NoCase(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Further attempts after the first, on connect failure or per-try timeout.
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
}
