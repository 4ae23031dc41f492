//! The X-Protocol interface: what the stream and proxy layers need of a multiplexed RPC protocol,
//! and nothing more. A frame stays the bytes it arrived as; the codec reads fields out of those
//! bytes and edits them in place (the request id), so a forwarded frame is never re-encoded
//! unless something in it changed.

use bytes::BytesMut;
use std::borrow::Cow;
use std::fmt;

/// What a frame is, as far as correlation is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Expects a response with the same request id.
    Request,
    /// A request that gets no response.
    Oneway,
    Response,
    /// A keep-alive request; answered by whoever receives it.
    Heartbeat,
    HeartbeatAck,
}

impl FrameKind {
    pub fn is_request(self) -> bool {
        matches!(
            self,
            FrameKind::Request | FrameKind::Oneway | FrameKind::Heartbeat
        )
    }
}

/// The fixed facts of one whole frame at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub kind: FrameKind,
    pub request_id: u64,
    /// Length of the whole frame in bytes, trailer included.
    pub len: usize,
    /// The caller's own deadline for a request, in milliseconds; 0 when it gives none.
    pub timeout_ms: u32,
    /// A response's protocol-specific status code (0 for requests).
    pub status: u16,
}

/// Why bytes are not a frame. Each is fatal for the connection: framing is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    UnknownMagic(u8),
    TooLarge { len: u64, limit: usize },
    BadChecksum { carried: u32, computed: u32 },
    Malformed(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::UnknownMagic(b) => write!(f, "unknown protocol magic byte 0x{b:02x}"),
            CodecError::TooLarge { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the limit of {limit} bytes")
            }
            CodecError::BadChecksum { carried, computed } => write!(
                f,
                "CRC32 mismatch: frame carries 0x{carried:08x}, bytes give 0x{computed:08x}"
            ),
            CodecError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// The answer to "is this connection speaking my protocol?" from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Match,
    NoMatch,
    NeedMore,
}

/// Why sluice answers a request itself instead of forwarding an upstream's response. Each codec
/// maps these to its own status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalReply {
    HeartbeatAck,
    /// No route matched the request.
    NoRoute,
    /// The deadline passed before an upstream answered.
    Timeout,
    /// No upstream could be reached, or the one holding the request went away.
    ConnectionClosed,
    /// Every upstream connection is at its in-flight limit.
    Overloaded,
}

/// The RPC local reply for each proxy error (each codec then spells it in its own statuses).
impl From<crate::error::ProxyError> for LocalReply {
    fn from(e: crate::error::ProxyError) -> LocalReply {
        use crate::error::ProxyError::*;
        match e {
            NoRoute => LocalReply::NoRoute,
            PerTryTimeout | Timeout => LocalReply::Timeout,
            UpstreamOverflow => LocalReply::Overloaded,
            NoHealthyUpstream
            | ConnectFailure
            | UpstreamReset
            | UpstreamProtocolError
            | DownstreamProtocolError => LocalReply::ConnectionClosed,
        }
    }
}

/// One multiplexed RPC protocol. Implementations are stateless and shared by all workers.
pub trait Codec: Send + Sync + 'static {
    /// The name used in config (`protocols: [bolt]`) and in logs.
    fn name(&self) -> &'static str;

    /// Whether a connection whose first bytes are `prefix` speaks this protocol.
    fn detect(&self, prefix: &[u8]) -> Detection;

    /// The head of the whole frame at the start of `buf`, once all of its bytes are there (and
    /// its checksum, if any, verified). `Ok(None)`: not all bytes yet. Frames longer than
    /// `max_frame` are an error as soon as their length is known.
    fn decode(&self, buf: &[u8], max_frame: usize) -> Result<Option<FrameHead>, CodecError>;

    /// The largest request id the protocol carries; pools allocate ids at or below it.
    fn max_request_id(&self) -> u64;

    /// Rewrites the request id of one whole frame in place, fixing any checksum.
    fn set_request_id(&self, frame: &mut [u8], id: u64);

    /// A header's value (the protocol's string map), if the frame carries that header.
    fn header<'a>(&self, frame: &'a [u8], name: &str) -> Option<&'a [u8]>;

    /// The service a request is for: what virtual hosts match on.
    fn service<'a>(&self, frame: &'a [u8]) -> Option<Cow<'a, str>>;

    /// The method a request calls: what routes match on.
    fn method<'a>(&self, frame: &'a [u8]) -> Option<Cow<'a, str>>;

    /// Appends sluice's own response to `request` to `out`. `request` may be only the start of
    /// the request frame (its first 32 bytes, or all of it if shorter): a reply is built from
    /// the fixed header alone.
    fn local_reply(&self, request: &[u8], reply: LocalReply, out: &mut BytesMut);

    /// Appends a heartbeat request with id `id` to `out`, for idle upstream connections and
    /// health checks.
    fn heartbeat(&self, id: u64, out: &mut BytesMut);

    /// Whether a response status means success (health checks use it).
    fn is_success(&self, status: u16) -> bool;
}
