//! Downstream HTTP/1.1 (and 1.0) connections: requests read with the sans-IO codec one after
//! another (pipelined ones wait in the buffer and are answered in order), each request body
//! streamed to the router while its response streams back, keep-alive, `Expect: 100-continue`
//! answered by sluice, websocket upgrades tunnelled, and the connection manager's timeouts:
//! idle_timeout between requests, request_headers_timeout and request_timeout from a request's
//! first byte, stream_idle_timeout while its body trickles in.

use super::fields::Fields;
use super::forward::{ConnInfo, Exchange};
use super::message::{is_hop_by_hop, Body, BodySender, Frame, Progress, RequestHead, Upgraded};
use super::text::Text;
use super::{config::UnderscoresAction, Hcm};
use crate::io::{Connection, ReadSide, WriteSide};
use crate::protocol::http1::{self, encode, Http1Error, Message, RequestDecoder, Version};
use crate::proxy::tcp_proxy::Active;
use crate::runtime::deadline::TimerPool;
use bytes::{Bytes, BytesMut};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const READ_CHUNK: usize = 16 * 1024;
/// The interim answer to `Expect: 100-continue`, sluice's own or relayed.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// What a connection reads a request's first bytes into (a head usually fits).
const IDLE_READ: usize = 2 * 1024;
/// A keep-alive connection quiet this long with nothing buffered hands its read buffer back
/// (as the stream layer's connections do), so that idle connections cost a few KiB each.
const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// A request body this small that arrived with its head goes to the router whole (and can be
/// retried).
const INLINE_BODY: usize = 64 * 1024;

enum HeadRead {
    Head(http1::RequestHead, Instant),
    Closed,
    /// Answer with this status and close.
    Failed(u16, String),
}

pub async fn serve(hcm: Rc<Hcm>, conn: Connection, peer: SocketAddr, initial: BytesMut) {
    hcm.stats.downstream_cx_http1_total.inc();
    let (mut rd, mut wr) = conn.split();
    let mut buf = initial;
    let mut decoder = RequestDecoder::new(hcm.config.limits);
    let info = ConnInfo::new(peer);
    loop {
        let (h, first_byte) =
            match read_head(&hcm, &info.timers, &mut rd, &mut buf, &mut decoder).await {
                HeadRead::Head(h, at) => (h, at),
                HeadRead::Closed => return,
                HeadRead::Failed(status, reason) => {
                    hcm.stats.downstream_cx_protocol_error.inc();
                    tracing::debug!(%peer, status, "closing an HTTP/1 connection: {reason}");
                    let _ = write_error(&mut wr, status).await;
                    hcm.count_response(status);
                    return;
                }
            };
        let start = SystemTime::now();
        hcm.stats.downstream_rq_total.inc();
        hcm.stats.downstream_rq_http1_total.inc();
        let _rq = Active::raise(&hcm.stats.downstream_rq_active);
        let client_keep_alive = h.keep_alive();
        let version = h.version;
        let expects_continue = h.expects_continue();
        let upgrade =
            h.headers.lists("connection", "upgrade") && h.headers.get("upgrade").is_some();
        let mut head = match to_request(&hcm, &h) {
            Ok(r) => r,
            Err((status, reason)) => {
                tracing::debug!(%peer, status, "refusing an HTTP/1 request: {reason}");
                let _ = write_error(&mut wr, status).await;
                hcm.count_response(status);
                return;
            }
        };
        let is_head = head.method == http::Method::HEAD;
        // The body: whole if it is already here and small, else streamed as it arrives.
        let is_grpc = head.is_grpc();
        let progress = Progress::default();
        let (body, feeder) = match inline_body(&mut decoder, &mut buf) {
            Ok(Inline::Whole(b)) => {
                progress.bytes.set(b.len() as u64);
                (
                    if b.is_empty() {
                        Body::Empty
                    } else {
                        Body::Full(b)
                    },
                    None,
                )
            }
            Ok(Inline::Partial(first)) => {
                let (tx, body) = Body::channel();
                progress.bytes.set(first.len() as u64);
                if !first.is_empty() {
                    let _ = tx.try_send(Ok(Frame::Data(first)));
                }
                (body, Some(tx))
            }
            Err(e) => {
                hcm.stats.downstream_cx_protocol_error.inc();
                let _ = write_error(&mut wr, e.status).await;
                hcm.count_response(e.status);
                return;
            }
        };
        // proxy_100_continue: the upstream's 100 Continue is relayed instead (Envoy's option).
        let relay_continue = expects_continue && hcm.config.proxy_100_continue;
        if relay_continue {
            head.continue_to = Some(Rc::default());
        }
        if expects_continue
            && !relay_continue
            && feeder.is_some()
            && wr.write_all(CONTINUE).await.is_err()
        {
            return;
        }
        let request_deadline = hcm.config.request_timeout.map(|t| first_byte + t);
        let mut fed = feeder.is_none();
        let sent = Cell::new(0u64);
        let close = Cell::new(!client_keep_alive);
        let mut outcome = {
            // Pinned where they are made: a move would copy these futures (kilobytes) whole.
            let mut respond = std::pin::pin!(async {
                let mut ex = match head.continue_to.clone() {
                    None => hcm.handle(head, body, &info).await,
                    // Rare: boxed, so that the common path's future does not grow by it.
                    Some(signal) => {
                        Box::pin(handle_relaying_continue(
                            &hcm, head, body, &info, signal, &mut wr,
                        ))
                        .await
                    }
                };
                hcm.replace_if_timed_out(&mut ex, is_grpc, &progress);
                let r = write_response(
                    &hcm,
                    &info.timers,
                    &mut wr,
                    &mut ex,
                    version,
                    is_head,
                    &close,
                    &sent,
                )
                .await;
                (ex, r)
            });
            let mut feed = std::pin::pin!(feed_body(
                &hcm,
                &info.timers,
                &mut rd,
                &mut buf,
                &mut decoder,
                feeder,
                request_deadline,
                &progress,
            ));
            loop {
                tokio::select! {
                    out = &mut respond => break out,
                    ok = &mut feed, if !fed => {
                        fed = true;
                        if !ok {
                            close.set(true);
                        }
                    }
                }
            }
        };
        // Borrowed, not moved out: a move would copy the exchange (256 bytes) once more.
        let (ex, written) = (&mut outcome.0, outcome.1);
        let status = ex.response.head.status;
        hcm.count_response(status);
        hcm.stats.downstream_rq_completed.inc();
        if hcm.logs_enabled() {
            hcm.log_exchange(
                ex,
                &ex.response.head,
                start,
                peer,
                progress.bytes.get(),
                sent.get(),
            );
        }
        if let Some(up) = ex.response.upgrade.take() {
            if written.is_ok() && status == 101 && upgrade {
                // An upgraded stream is held to max_stream_duration too, as in Envoy.
                let tunnelled = tunnel(rd, wr, buf, *up);
                hcm.within_max_duration(&info.timers, ex.deadline, tunnelled)
                    .await;
            }
            return;
        }
        if written.is_err() || !fed || close.get() || !decoder.is_idle() {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// Handles a request whose upstream may answer `100 Continue` (proxy_100_continue), writing
/// that to the client (once) while the exchange goes on.
async fn handle_relaying_continue(
    hcm: &Rc<Hcm>,
    head: Box<RequestHead>,
    body: Body,
    info: &ConnInfo,
    signal: Rc<tokio::sync::Notify>,
    wr: &mut WriteSide,
) -> Exchange {
    let handle = hcm.handle(head, body, info);
    tokio::pin!(handle);
    let mut relayed = false;
    loop {
        tokio::select! {
            biased;
            // First, so that a 100 that came with the final response still goes out before it.
            _ = signal.notified(), if !relayed => {
                relayed = true;
                if wr.write_all(CONTINUE).await.is_err() {
                    tracing::debug!("the client went away before its 100 Continue");
                }
            }
            ex = &mut handle => {
                if !relayed && super::message::continue_pending(&signal) {
                    let _ = wr.write_all(CONTINUE).await;
                }
                return ex;
            }
        }
    }
}

async fn read_head(
    hcm: &Hcm,
    timers: &TimerPool,
    rd: &mut ReadSide,
    buf: &mut BytesMut,
    decoder: &mut RequestDecoder,
) -> HeadRead {
    let c = &hcm.config;
    let blank = |b: &BytesMut| b.iter().all(|x| *x == b'\r' || *x == b'\n');
    let mut started = (!blank(buf)).then(Instant::now);
    loop {
        match decoder.decode(buf) {
            Ok(Some(Message::Head(h))) => {
                return HeadRead::Head(h, started.unwrap_or_else(Instant::now))
            }
            Ok(Some(_)) => return HeadRead::Failed(400, "body bytes without a head".into()),
            Ok(None) => {}
            Err(e) => return HeadRead::Failed(e.status, e.reason),
        }
        let deadline = match started {
            None => c.idle_timeout.map(|t| Instant::now() + t),
            Some(s) => {
                let a = c.request_headers_timeout.map(|t| s + t);
                let b = c.request_timeout.map(|t| s + t);
                match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        let release = (started.is_none() && buf.is_empty() && buf.capacity() > IDLE_READ)
            .then(|| Instant::now() + RELEASE_AFTER);
        let wake = match (deadline, release) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        // A head usually fits in a small buffer; it grows only for a head that does not.
        buf.reserve(if started.is_none() && buf.is_empty() {
            IDLE_READ
        } else {
            READ_CHUNK
        });
        let read = match wake {
            Some(d) => timers.timeout_at(d, rd.read_buf(buf)).await,
            None => Ok(rd.read_buf(buf).await),
        };
        match read {
            Err(_) if release.is_some_and(|r| deadline.is_none_or(|d| r < d)) => {
                // Quiet for a second between requests: the buffer goes back (the read was
                // cancelled before taking any byte).
                *buf = BytesMut::new();
            }
            Err(_) if started.is_none() => {
                hcm.stats.downstream_cx_idle_timeout.inc();
                return HeadRead::Closed;
            }
            Err(_) => {
                hcm.stats.downstream_rq_header_timeout.inc();
                return HeadRead::Failed(408, "request header timeout".into());
            }
            Ok(Ok(0)) | Ok(Err(_)) => return HeadRead::Closed,
            Ok(Ok(_)) => {
                if started.is_none() && !blank(buf) {
                    started = Some(Instant::now());
                }
            }
        }
    }
}

enum Inline {
    /// The whole body (possibly empty) was in the buffer.
    Whole(Bytes),
    /// The start of a body that continues.
    Partial(Bytes),
}

fn inline_body(decoder: &mut RequestDecoder, buf: &mut BytesMut) -> Result<Inline, Http1Error> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut size = 0;
    loop {
        match decoder.decode(buf)? {
            Some(Message::Data(d)) => {
                size += d.len();
                parts.push(d);
                if size > INLINE_BODY {
                    return Ok(Inline::Partial(join(parts)));
                }
            }
            // Trailers on a request are not forwarded to HTTP/1 upstreams either way.
            Some(Message::End(_)) => return Ok(Inline::Whole(join(parts))),
            Some(Message::Head(_)) => return Err(Http1Error::bad_request("a head inside a body")),
            None => return Ok(Inline::Partial(join(parts))),
        }
    }
}

fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => Bytes::from(parts.concat()),
    }
}

/// Reads the rest of a request body into its channel. `true` when it ended cleanly.
#[allow(clippy::too_many_arguments)]
async fn feed_body(
    hcm: &Hcm,
    timers: &TimerPool,
    rd: &mut ReadSide,
    buf: &mut BytesMut,
    decoder: &mut RequestDecoder,
    tx: Option<BodySender>,
    deadline: Option<Instant>,
    progress: &Progress,
) -> bool {
    let Some(tx) = tx else { return true };
    let idle = hcm.config.stream_idle_timeout;
    loop {
        match decoder.decode(buf) {
            Ok(Some(Message::Data(d))) => {
                progress.bytes.set(progress.bytes.get() + d.len() as u64);
                if tx.send(Ok(Frame::Data(d))).await.is_err() {
                    return false; // nobody wants the rest (the request failed)
                }
                continue;
            }
            Ok(Some(Message::End(trailers))) => {
                if let Some(t) = trailers.filter(|t| !t.is_empty()) {
                    if let Ok(map) = super::upstream::to_header_map(&t) {
                        let _ = tx.send(Ok(Frame::Trailers(map))).await;
                    }
                }
                return true;
            }
            Ok(Some(Message::Head(_))) | Err(_) => {
                hcm.stats.downstream_cx_protocol_error.inc();
                let _ = tx.send(Err(super::message::BodyError::Protocol)).await;
                return false;
            }
            Ok(None) => {}
        }
        let until = match (idle.map(|t| Instant::now() + t), deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        buf.reserve(READ_CHUNK);
        let read = match until {
            Some(d) => timers.timeout_at(d, rd.read_buf(buf)).await,
            None => Ok(rd.read_buf(buf).await),
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => {
                hcm.stats.downstream_rq_rx_reset.inc();
                let _ = tx.send(Err(super::message::BodyError::Reset)).await;
                return false;
            }
            Err(_) => {
                // (downstream_rq_timeout is counted where the 408 is made.)
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    progress.timed_out.set(true);
                } else {
                    progress.idled.set(true);
                    hcm.stats.downstream_rq_idle_timeout.inc();
                }
                let _ = tx.send(Err(super::message::BodyError::Idle)).await;
                return false;
            }
        }
    }
}

/// The codec's head as the stream model's request head; `Err` is the status to refuse it with.
fn to_request(hcm: &Hcm, h: &http1::RequestHead) -> Result<Box<RequestHead>, (u16, String)> {
    let c = &hcm.config;
    if h.version == Version::Http10 && !c.accept_http_10 {
        return Err((
            426,
            "HTTP/1.0 is not accepted (accept_http_10 is off)".into(),
        ));
    }
    let method = http::Method::from_bytes(h.method().as_bytes())
        .map_err(|_| (400, "invalid method".to_string()))?;
    if method == http::Method::CONNECT {
        return Err((403, "CONNECT is not enabled".into()));
    }
    let target = h.target();
    let (mut authority, path) = if target.first() == Some(&b'/') {
        // ASCII (the codec refuses any other byte in a target): shared, not copied.
        (None, Text::from_shared_lossy(h.target_shared()))
    } else if target == b"*" && method == http::Method::OPTIONS {
        (None, Text::from_static("*"))
    } else {
        let uri: http::Uri = std::str::from_utf8(target)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or((400, "invalid request target".to_string()))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(a)) => (
                Some(Text::from(a.as_str())),
                uri.path_and_query()
                    .map_or(Text::from_static("/"), |p| Text::from(p.as_str())),
            ),
            _ => return Err((400, "invalid request target".into())),
        }
    };
    // Room for the fields the router adds (x-request-id, x-forwarded-proto, ...): no regrowth.
    let mut headers = Fields::with_capacity(h.headers.len() + 6);
    let keep_upgrade = h.headers.lists("connection", "upgrade");
    for (k, shared) in h.headers.iter_shared() {
        let v: &[u8] = &shared;
        if k.contains(&b'_') {
            match c.headers_with_underscores {
                UnderscoresAction::Allow => {}
                UnderscoresAction::DropHeader => continue,
                UnderscoresAction::RejectRequest => {
                    return Err((400, "header name with an underscore".into()))
                }
            }
        }
        let name =
            super::fields::parsed_name(k).map_err(|_| (400, "invalid header name".to_string()))?;
        if name == http::header::HOST {
            if authority.is_none() {
                authority = Some(Text::from_shared_lossy(shared));
            }
            continue;
        }
        if name == http::header::EXPECT
            && v.eq_ignore_ascii_case(b"100-continue")
            && !c.proxy_100_continue
        {
            continue; // answered here
        }
        if is_hop_by_hop(&name) {
            let keep = (name == http::header::TE && v.eq_ignore_ascii_case(b"trailers"))
                || (name == http::header::UPGRADE && keep_upgrade);
            if !keep {
                continue;
            }
        }
        let value = super::fields::parsed_value(shared)
            .map_err(|_| (400, "invalid header value".to_string()))?;
        headers.append(name, value);
    }
    let authority = match authority {
        Some(a) => a,
        None if h.version == Version::Http10 => {
            Text::from(c.default_host_for_http_10.as_deref().unwrap_or_default())
        }
        None => return Err((400, "missing host header".into())),
    };
    Ok(Box::new(RequestHead {
        method,
        scheme: "http",
        authority,
        path,
        version: match h.version {
            Version::Http10 => http::Version::HTTP_10,
            Version::Http11 => http::Version::HTTP_11,
        },
        headers,
        continue_to: None,
    }))
}

/// A status sluice answers a broken request with, then closes (Envoy's codec errors).
async fn write_error(wr: &mut WriteSide, status: u16) -> std::io::Result<()> {
    let reason = encode::reason_phrase(status);
    let mut out = BytesMut::new();
    let len = reason.len().to_string();
    encode::response_head(
        status,
        reason.as_bytes(),
        [
            (&b"content-length"[..], len.as_bytes()),
            (b"content-type", b"text/plain"),
            (b"connection", b"close"),
        ],
        &mut out,
    );
    out.extend_from_slice(reason.as_bytes());
    wr.write_all(&out).await?;
    wr.shutdown().await
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum OutFraming {
    None,
    Length,
    Chunked,
    UntilClose,
}

/// Writes response bytes; a client that takes none of them for stream_idle_timeout ends the
/// stream (Envoy's stream idle timeout also runs while a response waits on its reader).
async fn send(hcm: &Hcm, timers: &TimerPool, wr: &mut WriteSide, bytes: &[u8]) -> Result<(), ()> {
    let Some(idle) = hcm.config.stream_idle_timeout else {
        return wr.write_all(bytes).await.map_err(|_| ());
    };
    // Most writes complete at once and need no timer (the pool's first poll takes none).
    match timers.timeout(idle, wr.write_all(bytes)).await {
        Ok(r) => r.map_err(|_| ()),
        Err(_) => {
            hcm.stats.downstream_rq_idle_timeout.inc();
            tracing::debug!("a client took no response bytes for stream_idle_timeout; closing it");
            Err(())
        }
    }
}

/// Writes the response head and streams its body. `Err` leaves the connection unusable.
#[allow(clippy::too_many_arguments)]
async fn write_response(
    hcm: &Hcm,
    timers: &TimerPool,
    wr: &mut WriteSide,
    ex: &mut Exchange,
    version: Version,
    is_head: bool,
    close: &Cell<bool>,
    sent: &Cell<u64>,
) -> Result<(), ()> {
    if !close.get() && crate::drain::drain_close() {
        // Draining: this response is the connection's last.
        close.set(true);
        hcm.stats.downstream_cx_drain_close.inc();
    }
    let resp = &mut ex.response;
    let status = resp.head.status;
    let bodiless = is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let declared = resp.head.headers.contains_key(http::header::CONTENT_LENGTH);
    let mut digits = [0u8; 20];
    // The framing field first, then the response's own, then the connection's (no list is
    // built: the head is written straight from these).
    let mut framing_field: Option<(&[u8], &[u8])> = None;
    let framing = if bodiless {
        OutFraming::None
    } else {
        match &resp.body {
            Body::Empty if !declared => {
                framing_field = Some((b"content-length", b"0"));
                OutFraming::None
            }
            Body::Empty => OutFraming::None,
            Body::Full(b) => {
                let len = encode::decimal(b.len() as u64, &mut digits);
                framing_field = Some((b"content-length", len));
                OutFraming::Length
            }
            _ if declared => OutFraming::Length,
            _ if version == Version::Http11 => {
                framing_field = Some((b"transfer-encoding", b"chunked"));
                OutFraming::Chunked
            }
            _ => {
                close.set(true);
                OutFraming::UntilClose
            }
        }
    };
    let replace_length = matches!(resp.body, Body::Full(_)) && !bodiless;
    let own = resp.head.headers.iter().filter_map(|(k, v)| {
        let skip = is_hop_by_hop(k) || (replace_length && k == http::header::CONTENT_LENGTH);
        (!skip).then(|| (k.as_str().as_bytes(), v.as_bytes()))
    });
    let connection: [Option<(&[u8], &[u8])>; 2] = if status == 101 {
        [
            Some((b"connection", b"upgrade")),
            resp.head
                .headers
                .get(http::header::UPGRADE)
                .map(|u| (&b"upgrade"[..], u.as_bytes())),
        ]
    } else if close.get() {
        [Some((b"connection", b"close")), None]
    } else if version == Version::Http10 {
        [Some((b"connection", b"keep-alive")), None]
    } else {
        [None, None]
    };
    let fields = framing_field
        .into_iter()
        .chain(own)
        .chain(connection.into_iter().flatten());
    let mut out = crate::io::scratch::Scratch::take();
    let reason = encode::reason_phrase(status);
    let reason = if reason == "Error" {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    } else {
        reason
    };
    encode::response_head(status, reason.as_bytes(), fields, &mut *out);
    if bodiless {
        return send(hcm, timers, wr, &out).await;
    }
    if let Body::Full(b) = &resp.body {
        out.extend_from_slice(b);
        sent.set(b.len() as u64);
        return send(hcm, timers, wr, &out).await;
    }
    send(hcm, timers, wr, &out).await?;
    if framing == OutFraming::None {
        return Ok(());
    }
    let streamed = stream_body(hcm, timers, wr, &mut resp.body, framing, &mut out, sent);
    let cut_off = hcm.within_max_duration(timers, ex.deadline, streamed).await;
    cut_off.unwrap_or_else(|| {
        // max_stream_duration ran out mid-response: the client sees it cut off.
        (ex.flags, ex.details) = ("DT", "max_duration_timeout");
        Err(())
    })
}

/// Streams a response body in `framing`; `out` is scratch for chunk framing.
async fn stream_body(
    hcm: &Hcm,
    timers: &TimerPool,
    wr: &mut WriteSide,
    body: &mut Body,
    framing: OutFraming,
    out: &mut Vec<u8>,
    sent: &Cell<u64>,
) -> Result<(), ()> {
    loop {
        match next_frame(hcm, timers, body).await {
            Some(Ok(Frame::Data(d))) => {
                sent.set(sent.get() + d.len() as u64);
                if framing == OutFraming::Chunked {
                    out.clear();
                    encode::chunk(&d, &mut *out);
                    send(hcm, timers, wr, out).await?;
                } else {
                    send(hcm, timers, wr, &d).await?;
                }
            }
            Some(Ok(Frame::Trailers(t))) => {
                if framing == OutFraming::Chunked {
                    out.clear();
                    encode::last_chunk(
                        t.iter().map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
                        &mut *out,
                    );
                    send(hcm, timers, wr, out).await?;
                }
                return Ok(());
            }
            None => {
                if framing == OutFraming::Chunked {
                    send(hcm, timers, wr, b"0\r\n\r\n").await?;
                }
                return Ok(());
            }
            Some(Err(_)) => {
                // The upstream broke off mid-body: the client must see an incomplete response.
                hcm.stats.rq_reset_after_downstream_response_started.inc();
                return Err(());
            }
        }
    }
}

/// The response body's next frame, within the stream idle timeout (a stalled upstream ends the
/// response as a reset would).
pub async fn next_frame(
    hcm: &Hcm,
    timers: &TimerPool,
    body: &mut Body,
) -> Option<Result<Frame, super::message::BodyError>> {
    match hcm.config.stream_idle_timeout {
        None => body.next().await,
        Some(t) => match timers.timeout(t, body.next()).await {
            Ok(f) => f,
            Err(_) => {
                hcm.stats.downstream_rq_idle_timeout.inc();
                Some(Err(super::message::BodyError::Idle))
            }
        },
    }
}

/// After a 101: bytes both ways until either side closes.
async fn tunnel(mut rd: ReadSide, mut wr: WriteSide, buf: BytesMut, up: Upgraded) {
    let Upgraded {
        rd: mut up_rd,
        wr: mut up_wr,
        buf: up_buf,
    } = up;
    let upward = async {
        if !buf.is_empty() && up_wr.write_all(&buf).await.is_err() {
            return;
        }
        let _ = tokio::io::copy(&mut rd, &mut up_wr).await;
        let _ = up_wr.shutdown().await;
    };
    let downward = async {
        if !up_buf.is_empty() && wr.write_all(&up_buf).await.is_err() {
            return;
        }
        let _ = tokio::io::copy(&mut up_rd, &mut wr).await;
        let _ = wr.shutdown().await;
    };
    tokio::join!(upward, downward);
}
