//! Upstream HTTP connections, pooled per worker, cluster and host: HTTP/1.1 keep-alive
//! connections (one request at a time each, reused when the exchange ended cleanly) and
//! HTTP/2 connections (many streams each, up to the server's and the cluster's limits).
//! Connections are made by the cluster's [`Connector`], so every transport (kernel, userspace
//! stack, TLS later) is the same here.

use super::message::{
    is_hop_by_hop, Body, BodyError, Fields, Frame, RequestHead, Response, ResponseHead,
};
use crate::config::http_options::UpstreamHttpOptions;
use crate::fasthash::FastMap;
use crate::io::connect::{ConnectError, Connector};
use crate::io::{ReadSide, WriteSide};
use crate::protocol::http1::{self, encode, Message, ResponseDecoder};
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Bytes read from an upstream connection at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A response body this small that arrived with its head is passed on whole.
const INLINE_BODY: usize = 64 * 1024;
/// Idle HTTP/1.1 connections kept per host.
const MAX_IDLE_PER_HOST: usize = 1024;

/// How one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    Connect(ConnectError),
    /// The connection closed or reset before a whole response head arrived. `reused`: it had
    /// carried a request before (the server may have closed it as idle just then); `sent`:
    /// whether any byte of the request went out.
    Reset {
        reused: bool,
    },
    /// HTTP/2: the server refused the stream (REFUSED_STREAM): it was not processed.
    Refused,
    /// The upstream's response was not valid HTTP.
    Protocol(String),
}

/// An HTTP/1.1 connection between exchanges.
struct Idle {
    rd: ReadSide,
    wr: WriteSide,
    buf: BytesMut,
    since: Instant,
    served: u32,
}

/// One cluster's connections on one worker.
pub struct HttpPool {
    connector: Connector,
    options: UpstreamHttpOptions,
    limits: http1::Limits,
    h1_idle: RefCell<FastMap<SocketAddr, Vec<Idle>>>,
    h2: RefCell<FastMap<SocketAddr, H2Conn>>,
    pub stats: std::sync::Arc<crate::stats::ClusterStats>,
}

#[derive(Clone)]
struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    served: Rc<std::cell::Cell<u32>>,
}

impl HttpPool {
    pub fn new(
        connector: Connector,
        options: UpstreamHttpOptions,
        stats: std::sync::Arc<crate::stats::ClusterStats>,
    ) -> HttpPool {
        HttpPool {
            connector,
            options,
            limits: http1::Limits {
                // Responses may carry larger heads than requests are allowed; Envoy's header
                // count limit (100) applies to them too.
                max_head_bytes: 96 * 1024,
                max_headers: 100,
            },
            h1_idle: RefCell::default(),
            h2: RefCell::default(),
            stats,
        }
    }

    pub fn options(&self) -> &UpstreamHttpOptions {
        &self.options
    }

    /// Sends one request over HTTP/1.1 to `host`, on a pooled connection if one is idle.
    pub async fn send_h1(
        self: &Rc<Self>,
        host: SocketAddr,
        head: &RequestHead,
        body: Body,
    ) -> Result<Response, AttemptError> {
        let (conn, reused) = match self.take_idle(host) {
            Some(c) => (c, true),
            None => {
                let c = self
                    .connector
                    .connect(host)
                    .await
                    .map_err(AttemptError::Connect)?;
                self.stats.upstream_cx_http1_total.inc();
                let (rd, wr) = c.split();
                (
                    Idle {
                        rd,
                        wr,
                        buf: BytesMut::with_capacity(READ_CHUNK),
                        since: Instant::now(),
                        served: 0,
                    },
                    false,
                )
            }
        };
        h1_exchange(self.clone(), host, conn, reused, head, body).await
    }

    fn take_idle(&self, host: SocketAddr) -> Option<Idle> {
        let mut map = self.h1_idle.borrow_mut();
        let list = map.get_mut(&host)?;
        let now = Instant::now();
        while let Some(mut c) = list.pop() {
            let expired = self
                .options
                .idle_timeout
                .is_some_and(|t| now.duration_since(c.since) >= t);
            if !expired && !closed_while_idle(&mut c.rd) {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, host: SocketAddr, mut c: Idle) {
        if self
            .options
            .max_requests_per_connection
            .is_some_and(|m| c.served >= m)
        {
            return;
        }
        c.since = Instant::now();
        let mut map = self.h1_idle.borrow_mut();
        let list = map.entry(host).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(c);
        }
    }

    /// Sends one request over HTTP/2 to `host`, as a new stream on its connection.
    pub async fn send_h2(
        self: &Rc<Self>,
        host: SocketAddr,
        head: &RequestHead,
        body: Body,
    ) -> Result<Response, AttemptError> {
        let conn = self.h2_conn(host).await?;
        let mut send = conn.send.clone().ready().await.map_err(|_| {
            self.h2.borrow_mut().remove(&host);
            AttemptError::Reset { reused: true }
        })?;
        conn.served.set(conn.served.get() + 1);
        if self
            .options
            .max_requests_per_connection
            .is_some_and(|m| conn.served.get() >= m)
        {
            // This stream is the connection's last: new requests go to a new one.
            self.h2.borrow_mut().remove(&host);
        }
        let request = to_h2_request(head, host)?;
        let end = body.is_end();
        let (response, stream) = send.send_request(request, end).map_err(|e| h2_error(&e))?;
        if !end {
            tokio::task::spawn_local(send_h2_body(body, stream));
        }
        let response = match &head.continue_to {
            None => response.await,
            Some(to) => relaying_continue(response, to).await,
        }
        .map_err(|e| h2_error(&e))?;
        let (parts, recv) = response.into_parts();
        let mut headers = Fields::from(parts.headers);
        strip_hop_by_hop(&mut headers);
        Ok(Response {
            head: ResponseHead {
                status: parts.status.as_u16(),
                headers,
            },
            body: Body::h2(recv),
            upgrade: None,
        })
    }

    async fn h2_conn(self: &Rc<Self>, host: SocketAddr) -> Result<H2Conn, AttemptError> {
        if let Some(c) = self.h2.borrow().get(&host) {
            return Ok(c.clone());
        }
        let io = self
            .connector
            .connect(host)
            .await
            .map_err(AttemptError::Connect)?;
        // Another request may have made one meanwhile; use it and let this one go.
        if let Some(c) = self.h2.borrow().get(&host) {
            return Ok(c.clone());
        }
        self.stats.upstream_cx_http2_total.inc();
        let o = &self.options.http2;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(o.initial_stream_window_size)
            .initial_connection_window_size(o.initial_connection_window_size)
            .max_concurrent_streams(o.max_concurrent_streams)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| AttemptError::Protocol(format!("HTTP/2 handshake: {e}")))?;
        let served: Rc<std::cell::Cell<u32>> = Rc::default();
        let pool = Rc::downgrade(self);
        let mine = served.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%host, "upstream HTTP/2 connection ended: {e}");
            }
            // Forget it, unless a newer connection to the host took its place already.
            if let Some(p) = pool.upgrade() {
                let mut map = p.h2.borrow_mut();
                if map.get(&host).is_some_and(|c| Rc::ptr_eq(&c.served, &mine)) {
                    map.remove(&host);
                }
            }
        });
        let c = H2Conn { send, served };
        self.h2.borrow_mut().insert(host, c.clone());
        Ok(c)
    }
}

/// Whether a pooled connection's server closed it (or sent something unasked) while idle.
/// An HTTP/2 response whose interim `100 Continue` is signalled to `to` (proxy_100_continue).
async fn relaying_continue(
    mut response: h2::client::ResponseFuture,
    to: &tokio::sync::Notify,
) -> Result<http::Response<h2::RecvStream>, h2::Error> {
    std::future::poll_fn(|cx| {
        while let std::task::Poll::Ready(Some(Ok(interim))) = response.poll_informational(cx) {
            if interim.status() == http::StatusCode::CONTINUE {
                to.notify_one();
            }
        }
        std::future::Future::poll(std::pin::Pin::new(&mut response), cx)
    })
    .await
}

fn closed_while_idle(rd: &mut ReadSide) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut rb = tokio::io::ReadBuf::new(&mut byte);
    tokio::io::AsyncRead::poll_read(std::pin::Pin::new(rd), &mut cx, &mut rb).is_ready()
}

fn h2_error(e: &h2::Error) -> AttemptError {
    if e.reason() == Some(h2::Reason::REFUSED_STREAM) {
        AttemptError::Refused
    } else if e.is_io() || e.is_go_away() || e.is_reset() {
        AttemptError::Reset { reused: true }
    } else {
        AttemptError::Protocol(e.to_string())
    }
}

pub fn strip_hop_by_hop(headers: &mut Fields) {
    headers.retain(|n, _| !is_hop_by_hop(n));
}

fn to_h2_request(head: &RequestHead, host: SocketAddr) -> Result<http::Request<()>, AttemptError> {
    let authority = if head.authority.is_empty() {
        host.to_string()
    } else {
        head.authority.to_string()
    };
    let uri = http::Uri::builder()
        .scheme(head.scheme)
        .authority(authority.as_str())
        .path_and_query(head.path.as_str())
        .build()
        .map_err(|e| AttemptError::Protocol(format!("request cannot be sent over HTTP/2: {e}")))?;
    let mut req = http::Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    let headers = req.headers_mut();
    headers.reserve(head.headers.len());
    for (k, v) in &head.headers {
        if is_hop_by_hop(k) || k == http::header::HOST {
            // `te: trailers` is the one connection-specific field HTTP/2 allows (gRPC needs it).
            if k == http::header::TE && v.as_bytes().eq_ignore_ascii_case(b"trailers") {
                headers.append(k.clone(), v.clone());
            }
            continue;
        }
        headers.append(k.clone(), v.clone());
    }
    Ok(req)
}

/// Streams a request body into an HTTP/2 stream, as fast as the stream's window lets it.
pub async fn send_h2_body(mut body: Body, mut stream: h2::SendStream<Bytes>) {
    loop {
        match body.next().await {
            Some(Ok(Frame::Data(data))) => {
                if !super::message::send_h2_data(&mut stream, data).await {
                    return;
                }
            }
            Some(Ok(Frame::Trailers(t))) => {
                let _ = stream.send_trailers(t);
                return;
            }
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(_)) => {
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
        }
    }
}

/// How the request's body goes out on an HTTP/1.1 connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    None,
    Length,
    Chunked,
}

/// The request head as HTTP/1.1 bytes, with the framing its body needs.
fn encode_h1_head(head: &RequestHead, body: &Body, out: &mut Vec<u8>) -> Outgoing {
    let has_length = head.headers.contains_key(http::header::CONTENT_LENGTH);
    let mut digits = [0u8; 20];
    let mut framing_field: Option<(&[u8], &[u8])> = None;
    let outgoing = match body {
        Body::Empty => Outgoing::None,
        Body::Full(b) => {
            framing_field = Some((
                b"content-length",
                encode::decimal(b.len() as u64, &mut digits),
            ));
            Outgoing::Length
        }
        _ if body.is_end() => Outgoing::None,
        _ if has_length => Outgoing::Length,
        _ => {
            framing_field = Some((b"transfer-encoding", b"chunked"));
            Outgoing::Chunked
        }
    };
    let full = matches!(body, Body::Full(_));
    let own = head.headers.iter().filter_map(|(k, v)| {
        let skip = (full && k == http::header::CONTENT_LENGTH)
            || is_hop_by_hop(k)
            || k == http::header::HOST;
        (!skip).then(|| (k.as_str().as_bytes(), v.as_bytes()))
    });
    // An upgrade (websocket) carries its own Connection and Upgrade fields.
    let upgrade = head.headers.get(http::header::UPGRADE).map(|up| {
        [
            (&b"connection"[..], &b"upgrade"[..]),
            (&b"upgrade"[..], up.as_bytes()),
        ]
    });
    let fields = std::iter::once((&b"host"[..], head.authority.as_bytes()))
        .chain(framing_field)
        .chain(own)
        .chain(upgrade.into_iter().flatten());
    encode::request_head(head.method.as_str(), head.path.as_bytes(), fields, out);
    outgoing
}

/// Writes a streamed request body, then hands the write side back — also when the body
/// failed (its client reset it, or it stalled past a timeout): closing the socket here would
/// tell the server a cut-short body had ended before the exchange has seen the failure.
async fn write_h1_body(
    mut wr: WriteSide,
    body: Body,
    framing: Outgoing,
) -> (WriteSide, Result<(), BodyError>) {
    let r = write_h1_frames(&mut wr, body, framing).await;
    (wr, r)
}

async fn write_h1_frames(
    wr: &mut WriteSide,
    mut body: Body,
    framing: Outgoing,
) -> Result<(), BodyError> {
    let mut out = BytesMut::new();
    loop {
        match body.next().await {
            Some(Ok(Frame::Data(d))) => {
                if framing == Outgoing::Chunked {
                    out.clear();
                    encode::chunk(&d, &mut out);
                    wr.write_all(&out).await.map_err(|_| BodyError::Reset)?;
                } else {
                    wr.write_all(&d).await.map_err(|_| BodyError::Reset)?;
                }
            }
            Some(Ok(Frame::Trailers(t))) => {
                if framing == Outgoing::Chunked {
                    out.clear();
                    encode::last_chunk(
                        t.iter().map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
                        &mut out,
                    );
                    wr.write_all(&out).await.map_err(|_| BodyError::Reset)?;
                }
                return Ok(());
            }
            None => {
                if framing == Outgoing::Chunked {
                    wr.write_all(b"0\r\n\r\n")
                        .await
                        .map_err(|_| BodyError::Reset)?;
                }
                return Ok(());
            }
            Some(Err(e)) => return Err(e),
        }
    }
}

/// Where the request's write side is while the response is read.
enum Writer {
    Here(WriteSide),
    Task(oneshot::Receiver<(WriteSide, Result<(), BodyError>)>),
}

async fn h1_exchange(
    pool: Rc<HttpPool>,
    host: SocketAddr,
    mut conn: Idle,
    reused: bool,
    head: &RequestHead,
    body: Body,
) -> Result<Response, AttemptError> {
    let mut out = crate::io::scratch::Scratch::take();
    let framing = encode_h1_head(head, &body, &mut out);
    if let Body::Full(b) = &body {
        out.extend_from_slice(b);
    }
    if conn.wr.write_all(&out).await.is_err() {
        return Err(AttemptError::Reset { reused });
    }
    drop(out); // back to the worker for the next head
    let mut writer = match body {
        Body::Empty | Body::Full(_) => Writer::Here(conn.wr),
        body if framing == Outgoing::None => {
            drop(body);
            Writer::Here(conn.wr)
        }
        body => {
            let (tx, rx) = oneshot::channel();
            let wr = conn.wr;
            tokio::task::spawn_local(async move {
                let _ = tx.send(write_h1_body(wr, body, framing).await);
            });
            Writer::Task(rx)
        }
    };
    let is_head = head.method == http::Method::HEAD;
    let upgrade_asked = head.headers.contains_key(http::header::UPGRADE);
    let mut decoder = ResponseDecoder::new(pool.limits);
    let mut buf = conn.buf;
    let mut got_bytes = !buf.is_empty();
    // The head, skipping 1xx interim responses; a 100 Continue goes on to the client when
    // the connection manager relays them (proxy_100_continue), else it was sluice's to send.
    let resp_head = loop {
        match decoder.decode(&mut buf, is_head) {
            Ok(Some(Message::Head(h))) if (100..200).contains(&h.status) && h.status != 101 => {
                if let (100, Some(to)) = (h.status, &head.continue_to) {
                    to.notify_one();
                }
                continue;
            }
            Ok(Some(Message::Head(h))) => break h,
            Ok(Some(Message::End(_))) => continue, // the end of an interim response
            Ok(Some(Message::Data(_))) => {
                return Err(AttemptError::Protocol("data before a response head".into()))
            }
            Ok(None) => {}
            Err(e) => return Err(AttemptError::Protocol(e.to_string())),
        }
        buf.reserve(READ_CHUNK);
        let read = match &mut writer {
            // A request body that fails before the answer ends the exchange at once (the
            // connection manager answers its client); the connection is not reused.
            Writer::Task(rx) => tokio::select! {
                biased;
                w = rx => match w {
                    Ok((w, Ok(()))) => {
                        writer = Writer::Here(w);
                        continue;
                    }
                    _ => return Err(AttemptError::Reset { reused: false }),
                },
                r = conn.rd.read_buf(&mut buf) => r,
            },
            Writer::Here(_) => conn.rd.read_buf(&mut buf).await,
        };
        match read {
            Ok(0) | Err(_) => {
                // Reused and nothing came back: the server closed the idle connection just as
                // the request went out (the "503 UC" race); the caller may retry safely.
                return Err(AttemptError::Reset {
                    reused: reused && !got_bytes,
                });
            }
            Ok(_) => got_bytes = true,
        }
    };
    let keep_alive = resp_head.keep_alive() && !head_says_close(head);
    let status = resp_head.status;
    let mut headers = to_fields(&resp_head.headers)?;
    let upgrade_to = headers.get(http::header::UPGRADE).cloned();
    strip_hop_by_hop(&mut headers);
    if let (101, Some(u)) = (status, upgrade_to) {
        // The protocol switched to goes back to the client with the 101.
        headers.insert(http::header::UPGRADE, u);
    }
    let head_out = ResponseHead { status, headers };
    if status == 101 {
        if !upgrade_asked {
            return Err(AttemptError::Protocol(
                "101 without an upgrade request".into(),
            ));
        }
        let wr = match writer {
            Writer::Here(w) => w,
            Writer::Task(rx) => match rx.await {
                Ok((w, Ok(()))) => w,
                _ => return Err(AttemptError::Reset { reused: false }),
            },
        };
        return Ok(Response {
            head: head_out,
            body: Body::Empty,
            upgrade: Some(Box::new(super::message::Upgraded {
                rd: conn.rd,
                wr,
                buf,
            })),
        });
    }
    // A body that is already here in full goes on as one piece, and the connection goes back
    // to the pool at once.
    // (Usually one piece: kept inline, no allocation.)
    let mut collected: smallvec::SmallVec<[Bytes; 2]> = smallvec::SmallVec::new();
    let mut size = 0;
    loop {
        match decoder.decode(&mut buf, is_head) {
            Ok(Some(Message::Data(d))) => {
                size += d.len();
                collected.push(d);
                if size > INLINE_BODY {
                    break;
                }
            }
            Ok(Some(Message::End(trailers))) => {
                if trailers.as_ref().is_some_and(|t| !t.is_empty()) || !buf.is_empty() {
                    // Trailers, or bytes after the response (not allowed): stream it instead.
                    let trailers = match trailers {
                        Some(t) => Some(to_header_map(&t)?),
                        None => None,
                    };
                    let (tx, rx) = Body::channel();
                    for d in collected {
                        let _ = tx.try_send(Ok(Frame::Data(d)));
                    }
                    if let Some(t) = trailers {
                        let _ = tx.try_send(Ok(Frame::Trailers(t)));
                    }
                    return Ok(Response {
                        head: head_out,
                        body: rx,
                        upgrade: None,
                    });
                }
                let body = match collected.len() {
                    0 => Body::Empty,
                    1 => Body::Full(collected.pop().unwrap_or_default()),
                    _ => Body::Full(Bytes::from(collected.concat())),
                };
                if keep_alive {
                    let back = GiveBack {
                        pool: pool.clone(),
                        host,
                        rd: conn.rd,
                        buf,
                        served: conn.served + 1,
                    };
                    match writer {
                        Writer::Here(wr) => back.with(wr),
                        writer => {
                            tokio::task::spawn_local(back.when_written(writer));
                        }
                    }
                }
                return Ok(Response {
                    head: head_out,
                    body,
                    upgrade: None,
                });
            }
            Ok(None) => break,
            Ok(Some(Message::Head(_))) => {
                return Err(AttemptError::Protocol("a second response head".into()))
            }
            Err(e) => return Err(AttemptError::Protocol(e.to_string())),
        }
    }
    // The rest of the body streams: a task reads it and hands the connection back at its end.
    let (tx, body) = Body::channel();
    let served = conn.served + 1;
    let mut rd = conn.rd;
    tokio::task::spawn_local(async move {
        for d in collected {
            if tx.send(Ok(Frame::Data(d))).await.is_err() {
                return;
            }
        }
        let clean = loop {
            match decoder.decode(&mut buf, is_head) {
                Ok(Some(Message::Data(d))) => {
                    if tx.send(Ok(Frame::Data(d))).await.is_err() {
                        return; // the downstream went away: this connection is mid-body
                    }
                    continue;
                }
                Ok(Some(Message::End(trailers))) => {
                    if let Some(t) = trailers.filter(|t| !t.is_empty()) {
                        match to_header_map(&t) {
                            Ok(t) => {
                                let _ = tx.send(Ok(Frame::Trailers(t))).await;
                            }
                            Err(_) => {
                                let _ = tx.send(Err(BodyError::Protocol)).await;
                                return;
                            }
                        }
                    }
                    break buf.is_empty();
                }
                Ok(Some(Message::Head(_))) | Err(_) => {
                    let _ = tx.send(Err(BodyError::Protocol)).await;
                    return;
                }
                Ok(None) => {}
            }
            buf.reserve(READ_CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) => match decoder.decode_eof(&buf) {
                    Ok(Some(Message::End(_))) => break false,
                    _ => {
                        let _ = tx.send(Err(BodyError::Reset)).await;
                        return;
                    }
                },
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.send(Err(BodyError::Reset)).await;
                    return;
                }
            }
        };
        drop(tx);
        if clean && keep_alive {
            GiveBack {
                pool,
                host,
                rd,
                buf,
                served,
            }
            .when_written(writer)
            .await;
        }
    });
    Ok(Response {
        head: head_out,
        body,
        upgrade: None,
    })
}

/// A connection whose exchange ended cleanly, on its way back to the pool once its write side
/// is back too.
struct GiveBack {
    pool: Rc<HttpPool>,
    host: SocketAddr,
    rd: ReadSide,
    buf: BytesMut,
    served: u32,
}

impl GiveBack {
    fn with(self, wr: WriteSide) {
        let idle = Idle {
            rd: self.rd,
            wr,
            buf: self.buf,
            since: Instant::now(),
            served: self.served,
        };
        self.pool.put_idle(self.host, idle);
    }

    /// Waits for a streamed request body to be written; a failed write keeps it out.
    async fn when_written(self, writer: Writer) {
        let wr = match writer {
            Writer::Here(w) => Some(w),
            Writer::Task(rx) => rx.await.ok().and_then(|(w, r)| r.ok().map(|()| w)),
        };
        if let Some(wr) = wr {
            self.with(wr);
        }
    }
}

fn head_says_close(head: &RequestHead) -> bool {
    head.headers.get_all(http::header::CONNECTION).any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// An HTTP/1 header block as a head's fields (names lower-cased).
pub fn to_fields(block: &http1::HeaderBlock) -> Result<Fields, AttemptError> {
    let mut fields = Fields::with_capacity(block.len() + 2);
    for (k, v) in block.iter_shared() {
        let name = super::fields::parsed_name(k)
            .map_err(|_| AttemptError::Protocol("invalid header name".into()))?;
        // The value stays in the head's buffer: no copy, no allocation per field.
        let value = super::fields::parsed_value(v)
            .map_err(|_| AttemptError::Protocol("invalid header value".into()))?;
        fields.append(name, value);
    }
    Ok(fields)
}

/// An HTTP/1 trailer block as an `http::HeaderMap` (names lower-cased).
pub fn to_header_map(block: &http1::HeaderBlock) -> Result<http::HeaderMap, AttemptError> {
    to_fields(block).map(Fields::into_map)
}
