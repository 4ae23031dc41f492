//! The codec-agnostic HTTP stream model between the codecs and the router, as Envoy has one:
//! a request or response head (pseudo-headers as fields of their own, the rest in an
//! `Fields` list), a body of data frames that ends with or without trailers, and a reset.
//! HTTP/1.1 and HTTP/2 are both read into it and written from it, so translating between them
//! is nothing more than a different writer.
//!
//! A body is pulled, one frame at a time, by whoever writes it out: nothing is read from the
//! source while the previous frame is still being written, which is the backpressure end to
//! end (an HTTP/2 source gets its window back only as its frames are taken).

pub use super::fields::Fields;
use super::text::Text;
use bytes::Bytes;
use http::{HeaderMap, Method};
use std::rc::Rc;
use tokio::sync::{mpsc, Notify};

/// Whether the upstream's 100 Continue was signalled to `to` and not taken yet (it may have
/// come in the same read as the final response, which then finished the exchange first).
pub fn continue_pending(to: &Notify) -> bool {
    let mut n = std::pin::pin!(to.notified());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::future::Future::poll(n.as_mut(), &mut cx).is_ready()
}

/// What a request says before its body.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// `http` or `https` (HTTP/2's :scheme; for HTTP/1 what the connection is).
    pub scheme: &'static str,
    /// Host / :authority as sent, port included.
    pub authority: Text,
    /// :path, query included (origin form; `*` for OPTIONS *).
    pub path: Text,
    /// The protocol the request arrived in.
    pub version: http::Version,
    /// Every other field; HTTP/1's connection-specific fields already removed.
    pub headers: Fields,
    /// With proxy_100_continue, a request that asked `Expect: 100-continue`: the upstream
    /// attempt signals here when its server answers `100 Continue`, and the downstream codec
    /// relays it to the client. `None` otherwise (sluice answered the Expect itself).
    pub continue_to: Option<Rc<Notify>>,
}

impl RequestHead {
    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// The host to match virtual hosts against: lower-cased, as Envoy matches domains.
    pub fn host(&self) -> &str {
        &self.authority
    }

    /// A gRPC request: HTTP/2-style `content-type: application/grpc[+...]`.
    pub fn is_grpc(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| {
                let v = v.as_bytes();
                v == b"application/grpc"
                    || v.starts_with(b"application/grpc+")
                    || v.starts_with(b"application/grpc;")
            })
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response's status and fields.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Fields,
}

/// One step of a body.
#[derive(Debug, Clone)]
pub enum Frame {
    Data(Bytes),
    /// The body ended with trailers (nothing follows).
    Trailers(HeaderMap),
}

/// Why a body did not end normally: the stream was reset or its connection broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The sender's side went away or reset the stream.
    Reset,
    /// The sender broke its protocol's framing.
    Protocol,
    /// The body did not progress within the stream's idle timeout.
    Idle,
}

/// A body: nothing, bytes already at hand, frames from a channel, or an HTTP/2 stream's.
pub enum Body {
    Empty,
    /// The whole body (a local reply, or a small body that arrived with its head).
    Full(Bytes),
    Channel(mpsc::Receiver<Result<Frame, BodyError>>),
    H2 {
        stream: h2::RecvStream,
        data_done: bool,
        /// A frame that takes longer than this ends the body with [`BodyError::Idle`] (the
        /// connection manager's stream_idle_timeout, for request bodies).
        idle: Option<std::time::Duration>,
        /// A body not ended by then ends with [`BodyError::Idle`] too, noted as `timed_out`
        /// (the connection manager's request_timeout).
        deadline: Option<tokio::time::Instant>,
        /// What the connection manager learns of the body as it is taken.
        progress: std::rc::Rc<Progress>,
    },
    /// A streamed request body held for retries (`replay.rs`).
    Replay(super::replay::Reader),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => write!(f, "Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::Channel(_) => write!(f, "Body::Channel"),
            Body::H2 { .. } => write!(f, "Body::H2"),
            Body::Replay(_) => write!(f, "Body::Replay"),
        }
    }
}

/// What a body's reader saw: bytes taken, and whether it stopped on the idle timeout or on
/// the request's deadline.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes: std::cell::Cell<u64>,
    pub idled: std::cell::Cell<bool>,
    pub timed_out: std::cell::Cell<bool>,
}

/// Frames in flight between a body's reader and its writer: with 16 KiB reads, at most
/// 64 KiB per direction of a stream wait in the channel.
pub const CHANNEL_FRAMES: usize = 4;

/// The sending half for a [`Body::Channel`].
pub type BodySender = mpsc::Sender<Result<Frame, BodyError>>;

impl Body {
    pub fn channel() -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        (tx, Body::Channel(rx))
    }

    pub fn h2(stream: h2::RecvStream) -> Body {
        Body::h2_request(stream, None, None, Default::default())
    }

    /// A downstream HTTP/2 request's body: bounded by the stream idle timeout and the
    /// request's deadline, what happened to it noted in `progress`.
    pub fn h2_request(
        stream: h2::RecvStream,
        idle: Option<std::time::Duration>,
        deadline: Option<tokio::time::Instant>,
        progress: std::rc::Rc<Progress>,
    ) -> Body {
        let data_done = stream.is_end_stream();
        Body::H2 {
            stream,
            data_done,
            idle,
            deadline,
            progress,
        }
    }

    /// Whether the body is known to be empty before it is read.
    pub fn is_end(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_empty(),
            Body::Channel(_) | Body::Replay(_) => false,
            Body::H2 { stream, .. } => stream.is_end_stream(),
        }
    }

    /// The next frame; `None` once the body has ended.
    pub async fn next(&mut self) -> Option<Result<Frame, BodyError>> {
        match self {
            Body::Empty => None,
            Body::Full(b) => {
                let b = std::mem::take(b);
                *self = Body::Empty;
                (!b.is_empty()).then_some(Ok(Frame::Data(b)))
            }
            Body::Channel(rx) => rx.recv().await,
            Body::Replay(r) => r.next().await,
            Body::H2 {
                stream,
                data_done,
                idle,
                deadline,
                progress,
            } => {
                if !*data_done {
                    let until = match (idle.map(|t| tokio::time::Instant::now() + t), *deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let next = match until {
                        Some(t) => match tokio::time::timeout_at(t, stream.data()).await {
                            Ok(n) => n,
                            Err(_) => {
                                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                                    progress.timed_out.set(true);
                                } else {
                                    progress.idled.set(true);
                                }
                                return Some(Err(BodyError::Idle));
                            }
                        },
                        None => stream.data().await,
                    };
                    match next {
                        Some(Ok(data)) => {
                            // The window comes back as the frame is taken: the sender can
                            // have only what sluice has not yet passed on outstanding.
                            let _ = stream.flow_control().release_capacity(data.len());
                            progress.bytes.set(progress.bytes.get() + data.len() as u64);
                            return Some(Ok(Frame::Data(data)));
                        }
                        Some(Err(e)) => return Some(Err(h2_body_error(&e))),
                        None => *data_done = true,
                    }
                }
                match stream.trailers().await {
                    Ok(Some(t)) => {
                        *self = Body::Empty;
                        Some(Ok(Frame::Trailers(t)))
                    }
                    Ok(None) => {
                        *self = Body::Empty;
                        None
                    }
                    Err(e) => Some(Err(h2_body_error(&e))),
                }
            }
        }
    }
}

fn h2_body_error(e: &h2::Error) -> BodyError {
    if e.is_io() || e.is_reset() || e.is_go_away() {
        BodyError::Reset
    } else {
        BodyError::Protocol
    }
}

/// A response on its way back: head, then body; or, for a 101, the upstream connection the
/// upgraded protocol continues on.
#[derive(Debug)]
pub struct Response {
    pub head: ResponseHead,
    pub body: Body,
    pub upgrade: Option<Box<Upgraded>>,
}

/// An upstream HTTP/1.1 connection after `101 Switching Protocols`, with what it already sent
/// past the head.
pub struct Upgraded {
    pub rd: crate::io::ReadSide,
    pub wr: crate::io::WriteSide,
    pub buf: bytes::BytesMut,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upgraded({} bytes read ahead)", self.buf.len())
    }
}

impl Response {
    /// A local reply with a text body (Envoy's local replies are text/plain).
    pub fn local(status: u16, body: &str) -> Response {
        let mut headers = Fields::new();
        if !body.is_empty() {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
        }
        headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        Response {
            head: ResponseHead { status, headers },
            body: if body.is_empty() {
                Body::Empty
            } else {
                Body::Full(Bytes::copy_from_slice(body.as_bytes()))
            },
            upgrade: None,
        }
    }
}

/// Fields that belong to one HTTP/1 connection and never travel on (RFC 9110 §7.6.1), plus
/// those HTTP/2 forbids.
pub fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header::*;
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == TE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Sends `data` on an HTTP/2 stream as fast as its window allows; `false` once the stream is
/// gone (reset, or its connection closed).
pub async fn send_h2_data(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) -> bool {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) if n > 0 => {
                let chunk = data.split_to(n.min(data.len()));
                if stream.send_data(chunk, false).is_err() {
                    return false;
                }
            }
            Some(Ok(_)) => {}
            _ => return false,
        }
    }
    true
}
