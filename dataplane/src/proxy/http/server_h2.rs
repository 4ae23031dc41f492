//! Downstream HTTP/2 connections (h2c with prior knowledge; ALPN `h2` arrives with TLS), on the
//! `h2` crate polled on the worker: each stream is a task of its own that runs the router and
//! streams the response back within the stream's flow-control window. The connection is
//! bounded against floods as Envoy bounds it — streams reset by the client before sluice has
//! seen them, and streams sluice had to reset, are limited per connection (CVE-2023-44487);
//! header blocks (CONTINUATION included) are capped at `max_request_headers_kb` — and a
//! connection that breaks a limit is closed and counted, the worker serves on.

use super::forward::ConnInfo;
use super::message::{Body, Frame, RequestHead, Response};
use super::text::Text;
use super::Hcm;
use crate::io::ByteStream;
use crate::proxy::tcp_proxy::Active;
use crate::runtime::deadline::TimerPool;
use bytes::Bytes;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::SystemTime;

/// Streams a client may reset before sluice accepted them, per connection (h2's rapid-reset
/// guard; Envoy's is comparable).
const MAX_PENDING_RESETS: usize = 100;
/// Streams sluice may reset because the client misbehaved, before the connection goes.
const MAX_LOCAL_RESETS: usize = 1024;

pub async fn serve(hcm: Rc<Hcm>, io: Box<dyn ByteStream>, peer: SocketAddr) {
    hcm.stats.downstream_cx_http2_total.inc();
    let o = &hcm.config.http2;
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(o.initial_stream_window_size)
        .initial_connection_window_size(o.initial_connection_window_size)
        .max_concurrent_streams(o.max_concurrent_streams)
        .max_header_list_size(hcm.config.limits.max_head_bytes as u32)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .max_send_buffer_size(hcm.buffer_limit.max(16 * 1024));
    let pacing = Rc::new(super::h2_guard::DrainPacing::default());
    let handshake = builder.handshake::<_, Bytes>(super::h2_guard::guard(io, pacing.clone()));
    let mut conn = match hcm.config.idle_timeout {
        Some(t) => match tokio::time::timeout(t, handshake).await {
            Ok(Ok(c)) => c,
            _ => {
                hcm.stats.downstream_cx_protocol_error.inc();
                return;
            }
        },
        None => match handshake.await {
            Ok(c) => c,
            Err(_) => {
                hcm.stats.downstream_cx_protocol_error.inc();
                return;
            }
        },
    };
    let active = Rc::new(std::cell::Cell::new(0usize));
    // Signalled when the last open stream ends: the idle timeout runs from then.
    let quiet = Rc::new(tokio::sync::Notify::new());
    let timers = TimerPool::default();
    let mut idle_since = tokio::time::Instant::now();
    let mut drain = crate::drain::subscribe();
    let mut stage = Stage::Serving { drain_at: None };
    loop {
        let idle_deadline = match (&stage, hcm.config.idle_timeout, active.get()) {
            (Stage::Serving { .. }, Some(t), 0) => Some(idle_since + t),
            _ => None,
        };
        let next = async {
            match idle_deadline {
                Some(d) => timers.timeout_at(d, conn.accept()).await.ok(),
                None => Some(conn.accept().await),
            }
        };
        let open = active.get();
        let next = tokio::select! {
            n = next => Some(n),
            _ = quiet.notified(), if open > 0 => {
                if active.get() == 0 {
                    idle_since = tokio::time::Instant::now();
                }
                continue;
            }
            _ = async {
                match stage {
                    Stage::Serving { drain_at: None } => {
                        crate::drain::reached(&mut drain, crate::drain::Phase::Draining).await
                    }
                    Stage::Serving { drain_at: Some(t) } | Stage::Notified { final_at: t } => {
                        tokio::time::sleep_until(t).await
                    }
                    Stage::Closing => std::future::pending().await,
                }
            } => None,
        };
        let Some(next) = next else {
            stage = match stage {
                // The drain has begun; this connection's turn comes by --drain-strategy.
                Stage::Serving { drain_at: None } => Stage::Serving {
                    drain_at: Some(tokio::time::Instant::now() + crate::drain::close_delay()),
                },
                Stage::Serving { drain_at: Some(_) } => {
                    hcm.stats.downstream_cx_drain_close.inc();
                    shutdown_notice(&hcm, &mut conn)
                }
                // drain_timeout is over: h2 sends the final GOAWAY, the open streams finish.
                Stage::Notified { .. } | Stage::Closing => {
                    pacing.release();
                    Stage::Closing
                }
            };
            continue;
        };
        match next {
            None => {
                // Idle: drained as Envoy drains an idle HTTP/2 connection.
                hcm.stats.downstream_cx_idle_timeout.inc();
                stage = shutdown_notice(&hcm, &mut conn);
            }
            Some(None) => return,
            Some(Some(Err(e))) => {
                // The client's own GOAWAY or a broken socket ends it quietly; anything sluice
                // had to end (a flood, a framing error) is counted.
                let flood = e.get_io().map(|io| io.kind()) == Some(std::io::ErrorKind::InvalidData);
                if !flood && (e.is_remote() || e.is_io()) {
                    return;
                }
                hcm.stats.downstream_cx_protocol_error.inc();
                tracing::debug!(%peer, "closing an HTTP/2 connection: {e}");
                return;
            }
            Some(Some(Ok((request, respond)))) => {
                active.set(active.get() + 1);
                let hcm = hcm.clone();
                let active = active.clone();
                let quiet = quiet.clone();
                tokio::task::spawn_local(async move {
                    stream(&hcm, request, respond, peer).await;
                    active.set(active.get() - 1);
                    if active.get() == 0 {
                        quiet.notify_one();
                    }
                });
                idle_since = tokio::time::Instant::now();
            }
        }
    }
}

/// Where a downstream HTTP/2 connection is in its life.
#[derive(Clone, Copy)]
enum Stage {
    /// Taking streams; `drain_at`: when its GOAWAY goes, once the server has begun draining.
    Serving {
        drain_at: Option<tokio::time::Instant>,
    },
    /// The first GOAWAY (last stream 2^31-1) is out; streams are still taken until `final_at`
    /// (the connection manager's drain_timeout), as Envoy takes them.
    Notified { final_at: tokio::time::Instant },
    /// The final GOAWAY is out (or due): the open streams finish, then the connection closes.
    Closing,
}

/// Sends the first GOAWAY of a graceful close; the final one waits for drain_timeout (see
/// `h2_guard::DrainPacing`).
fn shutdown_notice<T, B>(hcm: &Hcm, conn: &mut h2::server::Connection<T, B>) -> Stage
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: bytes::Buf,
{
    conn.graceful_shutdown();
    Stage::Notified {
        final_at: tokio::time::Instant::now() + hcm.config.drain_timeout,
    }
}

async fn stream(
    hcm: &Rc<Hcm>,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: SocketAddr,
) {
    let start = SystemTime::now();
    hcm.stats.downstream_rq_total.inc();
    hcm.stats.downstream_rq_http2_total.inc();
    let _rq = Active::raise(&hcm.stats.downstream_rq_active);
    let (parts, recv) = request.into_parts();
    let expects_continue = parts
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut head = match to_request(hcm, parts) {
        Ok(h) => h,
        Err(status) => {
            let r = super::local_reply::reply(None, status, "");
            hcm.count_response(status);
            let _ = send(hcm, &TimerPool::default(), &mut respond, r, None).await;
            return;
        }
    };
    // Expect: 100-continue, as Envoy's connection manager does it on every codec: answered by
    // sluice at once (and not forwarded), or with proxy_100_continue relayed from upstream.
    if expects_continue && hcm.config.proxy_100_continue {
        head.continue_to = Some(Rc::default());
    } else if expects_continue {
        head.headers.remove(http::header::EXPECT);
        let _ = respond.send_informational(continue_response());
    }
    let progress: Rc<super::message::Progress> = Rc::default();
    // request_timeout runs from the head to the body's end (Envoy disarms it there).
    let deadline = hcm
        .config
        .request_timeout
        .map(|t| tokio::time::Instant::now() + t);
    let grpc = head.is_grpc();
    let body = Body::h2_request(
        recv,
        hcm.config.stream_idle_timeout,
        deadline,
        progress.clone(),
    );
    let info = ConnInfo::new(peer);
    // A client that resets the stream before its answer ends the request upstream too
    // (dropping the attempt resets its upstream stream), as Envoy does.
    let signal = head.continue_to.clone();
    let mut relayed = signal.is_none();
    let handle = hcm.handle(head, body, &info);
    tokio::pin!(handle);
    let mut ex = loop {
        tokio::select! {
            biased;
            _ = async { if let Some(s) = &signal { s.notified().await } }, if !relayed => {
                relayed = true;
                let _ = respond.send_informational(continue_response());
            }
            ex = &mut handle => {
                if let Some(s) = signal.as_ref().filter(|_| !relayed) {
                    if super::message::continue_pending(s) {
                        let _ = respond.send_informational(continue_response());
                    }
                }
                break ex;
            }
            _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                hcm.stats.downstream_rq_rx_reset.inc();
                return;
            }
        }
    };
    hcm.replace_if_timed_out(&mut ex, grpc, &progress);
    let status = ex.response.head.status;
    hcm.count_response(status);
    let response = std::mem::replace(&mut ex.response, Response::local(status, ""));
    let head_copy = hcm.logs_enabled().then(|| response.head.clone());
    let (sent, cut_off) = send(hcm, &info.timers, &mut respond, response, ex.deadline).await;
    if cut_off {
        (ex.flags, ex.details) = ("DT", "max_duration_timeout");
    }
    hcm.stats.downstream_rq_completed.inc();
    if progress.idled.get() {
        hcm.stats.downstream_rq_idle_timeout.inc();
    }
    if let Some(resp_head) = head_copy.as_ref() {
        hcm.log_exchange(&ex, resp_head, start, peer, progress.bytes.get(), sent);
    }
}

fn continue_response() -> http::Response<()> {
    let mut r = http::Response::new(());
    *r.status_mut() = http::StatusCode::CONTINUE;
    r
}

fn to_request(hcm: &Hcm, parts: http::request::Parts) -> Result<Box<RequestHead>, u16> {
    let authority = match parts.uri.authority() {
        Some(a) => Text::from(a.as_str()),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(Text::from)
            .ok_or(400u16)?,
    };
    if parts.method == http::Method::CONNECT {
        return Err(403);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| Text::from(p.as_str()))
        .ok_or(400u16)?;
    let mut headers = super::fields::Fields::from(parts.headers);
    headers.remove(http::header::HOST);
    let underscores = hcm.config.headers_with_underscores;
    if underscores != super::config::UnderscoresAction::Allow
        && headers.iter().any(|(k, _)| k.as_str().contains('_'))
    {
        if underscores == super::config::UnderscoresAction::RejectRequest {
            return Err(400);
        }
        headers.retain(|k, _| !k.as_str().contains('_'));
    }
    Ok(Box::new(RequestHead {
        method: parts.method,
        scheme: if parts.uri.scheme_str() == Some("https") {
            "https"
        } else {
            "http"
        },
        authority,
        path,
        version: http::Version::HTTP_2,
        headers,
        continue_to: None,
    }))
}

/// Sends the response head and body on the stream: the body bytes sent, and whether the body
/// was still streaming at `deadline` (max_stream_duration) and cut off with a reset, as Envoy
/// does.
async fn send(
    hcm: &Hcm,
    timers: &TimerPool,
    respond: &mut h2::server::SendResponse<Bytes>,
    mut r: Response,
    deadline: Option<tokio::time::Instant>,
) -> (u64, bool) {
    let mut headers = std::mem::take(&mut r.head.headers);
    super::upstream::strip_hop_by_hop(&mut headers);
    let mut out = http::Response::new(());
    *out.status_mut() =
        http::StatusCode::from_u16(r.head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *out.headers_mut() = headers.into_map();
    let end = r.body.is_end();
    let mut stream = match respond.send_response(out, end) {
        Ok(s) => s,
        Err(_) => {
            hcm.stats.downstream_rq_tx_reset.inc();
            return (0, false);
        }
    };
    if end {
        return (0, false);
    }
    let sent = std::cell::Cell::new(0u64);
    let streamed = stream_body(hcm, timers, &mut stream, &mut r.body, &sent);
    let cut_off = hcm
        .within_max_duration(timers, deadline, streamed)
        .await
        .is_none();
    if cut_off {
        stream.send_reset(h2::Reason::NO_ERROR);
    }
    (sent.get(), cut_off)
}

/// Streams a response body on `stream`, counting its bytes in `sent`.
async fn stream_body(
    hcm: &Hcm,
    timers: &TimerPool,
    stream: &mut h2::SendStream<Bytes>,
    body: &mut Body,
    sent: &std::cell::Cell<u64>,
) {
    loop {
        match super::server_h1::next_frame(hcm, timers, body).await {
            Some(Ok(Frame::Data(data))) => {
                let n = data.len() as u64;
                if !super::message::send_h2_data(stream, data).await {
                    hcm.stats.downstream_rq_rx_reset.inc();
                    return;
                }
                sent.set(sent.get() + n);
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
                hcm.stats.rq_reset_after_downstream_response_started.inc();
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        }
    }
}
