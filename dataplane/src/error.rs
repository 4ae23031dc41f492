//! The one proxy error: what failed for one request, on which side, and whether a retry is
//! safe. Every protocol's local reply is rendered from it — Bolt's status through
//! [`crate::protocol::xprotocol::LocalReply`], HTTP's status, body and response flag through
//! [`ProxyError::http_status`], [`ProxyError::envoy_body`] and [`ProxyError::response_flag`]
//! (Envoy's, so access logs and dashboards read the same).

/// Which side of the proxy a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    /// Neither peer: sluice's own config or limits (no route, no healthy host).
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// No route matched the request.
    NoRoute,
    /// The cluster had no host to send to.
    NoHealthyUpstream,
    /// The connection to the chosen host could not be made; the request never left.
    ConnectFailure,
    /// Every connection to the host is at its limit; the request never left.
    UpstreamOverflow,
    /// The upstream connection broke with the request outstanding: it may have been processed.
    UpstreamReset,
    /// The attempt's own deadline (per-try timeout) passed; the request may have been processed.
    PerTryTimeout,
    /// The request's overall deadline passed.
    Timeout,
    /// The upstream sent what its protocol does not allow.
    UpstreamProtocolError,
    /// The client sent what its protocol does not allow.
    DownstreamProtocolError,
}

impl ProxyError {
    pub fn side(self) -> Side {
        use ProxyError::*;
        match self {
            NoRoute | NoHealthyUpstream => Side::Local,
            DownstreamProtocolError => Side::Downstream,
            ConnectFailure
            | UpstreamOverflow
            | UpstreamReset
            | PerTryTimeout
            | Timeout
            | UpstreamProtocolError => Side::Upstream,
        }
    }

    /// Whether the request is known not to have reached an upstream: retrying it cannot make
    /// it happen twice. (Others may still be retried when the route's policy asks, as Envoy's
    /// `reset` and `per-try-timeout` conditions do.)
    pub fn request_never_left(self) -> bool {
        matches!(
            self,
            ProxyError::ConnectFailure
                | ProxyError::UpstreamOverflow
                | ProxyError::NoHealthyUpstream
        )
    }

    /// Envoy's response flag for this failure.
    pub fn response_flag(self) -> &'static str {
        use ProxyError::*;
        match self {
            NoRoute => "NR",
            NoHealthyUpstream => "UH",
            ConnectFailure => "UF",
            UpstreamOverflow => "UO",
            UpstreamReset => "UC",
            PerTryTimeout | Timeout => "UT",
            UpstreamProtocolError => "UPE",
            DownstreamProtocolError => "DPE",
        }
    }

    /// The HTTP status Envoy answers this failure with.
    pub fn http_status(self) -> u16 {
        use ProxyError::*;
        match self {
            NoRoute => 404,
            NoHealthyUpstream
            | ConnectFailure
            | UpstreamOverflow
            | UpstreamReset
            | UpstreamProtocolError => 503,
            PerTryTimeout | Timeout => 504,
            DownstreamProtocolError => 400,
        }
    }

    /// The body of Envoy's local reply for this failure.
    pub fn envoy_body(self) -> &'static str {
        use ProxyError::*;
        match self {
            NoRoute => "",
            NoHealthyUpstream => "no healthy upstream",
            ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
            }
            UpstreamOverflow => "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            UpstreamReset => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
            }
            PerTryTimeout | Timeout => "upstream request timeout",
            UpstreamProtocolError => {
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
            }
            DownstreamProtocolError => "Bad Request",
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            ProxyError::NoRoute => "no route",
            ProxyError::NoHealthyUpstream => "no healthy upstream",
            ProxyError::ConnectFailure => "upstream connect failure",
            ProxyError::UpstreamOverflow => "upstream overflow",
            ProxyError::UpstreamReset => "upstream reset",
            ProxyError::PerTryTimeout => "per-try timeout",
            ProxyError::Timeout => "request timeout",
            ProxyError::UpstreamProtocolError => "upstream protocol error",
            ProxyError::DownstreamProtocolError => "downstream protocol error",
        };
        write!(
            f,
            "{what} ({}, {:?} side)",
            self.response_flag(),
            self.side()
        )
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_renderings() {
        assert_eq!(ProxyError::NoRoute.http_status(), 404);
        assert_eq!(
            ProxyError::NoHealthyUpstream.envoy_body(),
            "no healthy upstream"
        );
        assert_eq!(ProxyError::Timeout.http_status(), 504);
        assert_eq!(ProxyError::ConnectFailure.response_flag(), "UF");
        assert!(ProxyError::ConnectFailure.request_never_left());
        assert!(!ProxyError::UpstreamReset.request_never_left());
        assert_eq!(ProxyError::UpstreamReset.side(), Side::Upstream);
        assert_eq!(
            ProxyError::PerTryTimeout.to_string(),
            "per-try timeout (UT, Upstream side)"
        );
    }
}
