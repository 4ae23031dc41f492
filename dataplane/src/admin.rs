//! The admin endpoint (the bootstrap's `admin.address`): `/ready`, `/stats` (Prometheus text),
//! `/config_dump`, `/clusters`, `/listeners`. It runs on its own thread, away from the workers,
//! and reads their stats shards and the current snapshot without stopping them.

use crate::control_status::ControlStatus;
use crate::protocol::http1::{encode, Http1Error, Limits, Message, RequestDecoder};
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use arc_swap::ArcSwap;
use bytes::BytesMut;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest request head the admin endpoint reads.
pub const MAX_REQUEST_HEAD: usize = 8192;

/// An admin request: what the handlers look at.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// Reads one admin request from `buf` with the data path's HTTP/1 codec (no second parser):
/// `Ok(None)` means read more. Only origin-form targets (`/path?query`) name an endpoint.
pub fn parse_request(
    decoder: &mut RequestDecoder,
    buf: &mut BytesMut,
) -> Result<Option<Request>, Http1Error> {
    loop {
        match decoder.decode(buf)? {
            None => return Ok(None),
            Some(Message::Head(head)) => {
                let target = String::from_utf8_lossy(head.target()).into_owned();
                if !target.starts_with('/') {
                    return Err(Http1Error::bad_request("the target must be a path"));
                }
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                return Ok(Some(Request {
                    method: head.method().to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                }));
            }
            // A body before the head cannot be: the decoder gives the head first.
            Some(_) => {}
        }
    }
}

/// The admin endpoint's codec limits: small heads, as no admin request needs more.
pub fn request_decoder() -> RequestDecoder {
    RequestDecoder::new(Limits {
        max_head_bytes: MAX_REQUEST_HEAD,
        ..Limits::default()
    })
}

pub struct Admin {
    pub stats: Arc<Stats>,
    pub current: Arc<ArcSwap<Snapshot>>,
    pub control: Arc<ControlStatus>,
    /// What `/server_info` reports of how sluice was started.
    pub server: ServerInfo,
    /// Set by `/healthcheck/fail`, cleared by `/healthcheck/ok`: `/ready` then says DRAINING.
    pub health_failed: std::sync::atomic::AtomicBool,
}

/// How this process was started, for `/server_info`.
pub struct ServerInfo {
    pub started: std::time::Instant,
    pub concurrency: usize,
    pub config_path: String,
    pub log_level: String,
    /// How long a graceful drain asks connections to close before listeners stop.
    pub drain_time: std::time::Duration,
}

/// Endpoints that change state: Envoy takes them as POST only, so a stray GET (a crawler, a
/// browser's prefetch) cannot stop the server.
const MUTATING: &[&str] = &[
    "/quitquitquit",
    "/drain_listeners",
    "/healthcheck/fail",
    "/healthcheck/ok",
    "/logging",
];

/// The one-line help of every endpoint, for `/help`.
const HELP: &[(&str, &str)] = &[
    ("/", "this list"),
    ("/help", "this list"),
    (
        "/ready",
        "LIVE (200) or DRAINING (503, after /healthcheck/fail)",
    ),
    (
        "/server_info",
        "version, state, uptime, command-line options (JSON)",
    ),
    (
        "/stats",
        "Envoy's text form; ?filter=REGEX, ?usedonly, ?format=json|prometheus",
    ),
    ("/stats/prometheus", "Prometheus text exposition"),
    (
        "/clusters",
        "upstream hosts and their counters; ?format=json",
    ),
    ("/listeners", "listeners and their addresses; ?format=json"),
    (
        "/config_dump",
        "the config as read, its version, the xDS resources",
    ),
    ("/memory", "allocator and process memory (JSON)"),
    ("/healthcheck/fail", "POST: report DRAINING on /ready"),
    ("/healthcheck/ok", "POST: report LIVE again"),
    ("/quitquitquit", "POST: stop sluice (as SIGTERM)"),
    (
        "/drain_listeners",
        "POST: stop accepting; ?graceful: ask connections to close for --drain-time-s first",
    ),
    (
        "/logging",
        "POST ?level=LEVEL: set the log level (trace, debug, info, warning, error, critical, off)",
    ),
];

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    /// Stop sluice once this answer is written (`/quitquitquit`).
    then_stop: bool,
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
        then_stop: false,
    }
}

fn json(body: &serde_json::Value) -> Response {
    Response {
        status: 200,
        content_type: "application/json",
        body: serde_json::to_string_pretty(body).unwrap_or_default() + "\n",
        then_stop: false,
    }
}

impl Admin {
    fn handle(&self, req: &Request) -> Response {
        let path = req.path.as_str();
        let mutating = MUTATING.contains(&path);
        match (req.method.as_str(), mutating) {
            ("POST", true) | ("GET" | "HEAD", false) => {}
            (_, true) => return text(405, format!("{path} takes POST only\n")),
            _ => {
                return text(
                    405,
                    "method not allowed: this admin endpoint is read-only (GET)\n",
                )
            }
        }
        let params = QueryParams::parse(&req.query);
        let want_json = params.get("format") == Some("json");
        match path {
            "/ready" => {
                if self.draining() {
                    text(503, "DRAINING\n")
                } else {
                    text(200, "LIVE\n")
                }
            }
            "/stats/prometheus" => self.prometheus(),
            "/stats" => match params.get("format") {
                Some("prometheus") => self.prometheus(),
                format => {
                    let filter = match params.get("filter").map(regex::Regex::new) {
                        Some(Ok(r)) => Some(r),
                        Some(Err(e)) => return text(400, format!("filter: invalid regex: {e}\n")),
                        None => None,
                    };
                    let query = crate::stats_text::Query {
                        filter,
                        used_only: params.has("usedonly"),
                    };
                    let stats = crate::stats_text::envoy_stats(&self.prometheus().body, &query);
                    if format == Some("json") {
                        json(&crate::stats_text::render_json(&stats))
                    } else {
                        text(200, crate::stats_text::render_text(&stats))
                    }
                }
            },
            "/server_info" => json(&self.server_info()),
            "/memory" => json(&memory_info()),
            "/healthcheck/fail" | "/healthcheck/ok" => {
                let failed = path == "/healthcheck/fail";
                self.health_failed
                    .store(failed, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(failed, "admin: health check state set");
                text(200, "OK\n")
            }
            "/drain_listeners" => {
                let graceful = params.has("graceful").then_some(self.server.drain_time);
                tracing::info!(?graceful, "admin: draining listeners");
                crate::drain::start(graceful);
                text(200, "OK\n")
            }
            "/quitquitquit" => {
                tracing::info!("admin: /quitquitquit, stopping");
                Response {
                    then_stop: true,
                    ..text(200, "OK\n")
                }
            }
            "/help" => text(200, help()),
            "/logging" => match params.get("level") {
                Some(level) => match crate::logging::set_level(level) {
                    Ok(name) => {
                        tracing::info!(level = name, "admin: log level set");
                        text(200, format!("log level: {name}\n"))
                    }
                    Err(e) => text(400, format!("level: {e}\n")),
                },
                None => text(
                    400,
                    "give ?level=LEVEL (trace, debug, info, warning, error, critical, off)\n",
                ),
            },
            "/config_dump" => json(&self.config_dump()),
            "/clusters" => self.clusters(want_json),
            "/listeners" => self.listeners(want_json),
            "/" => text(200, help()),
            _ => text(404, format!("no admin endpoint {}\n", req.path)),
        }
    }

    fn prometheus(&self) -> Response {
        Response {
            content_type: "text/plain; version=0.0.4",
            ..text(
                200,
                self.stats.render_prometheus()
                    + &self.health_metrics()
                    + &self.control.render_prometheus(),
            )
        }
    }

    /// After `/healthcheck/fail` (until `/healthcheck/ok`) or `/drain_listeners`.
    fn draining(&self) -> bool {
        self.health_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            || crate::drain::is_draining()
    }

    /// Envoy's `/server_info` fields that mean something here.
    fn server_info(&self) -> serde_json::Value {
        let s = &self.server;
        let up = s.started.elapsed().as_secs().to_string();
        let state = if self.draining() { "DRAINING" } else { "LIVE" };
        serde_json::json!({
            "version": format!("sluice/{}", env!("CARGO_PKG_VERSION")),
            "state": state,
            "uptime_current_epoch": format!("{up}s"),
            "uptime_all_epochs": format!("{up}s"),
            "hot_restart_version": "disabled",
            "command_line_options": {
                "concurrency": s.concurrency,
                "config_path": s.config_path,
                "log_level": s.log_level,
                "restart_epoch": 0,
            },
        })
    }

    fn config_dump(&self) -> serde_json::Value {
        let snap = self.current.load();
        serde_json::json!({
            "configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "version_info": snap.version.to_string(),
                "bootstrap": serde_json::from_str::<serde_json::Value>(&snap.bootstrap.source).ok(),
            }],
            // The version the control process pushed the resources as (absent: the file's).
            "resources_version": snap.bootstrap.resources_version,
            // The xDS client's view: each dynamic resource with its version and state.
            "dynamic_resources": self.control.get(),
            "bound_listeners": snap.bound.iter().map(|(n, a)| serde_json::json!({"name": n, "address": a.to_string()})).collect::<Vec<_>>(),
        })
    }

    /// Per-endpoint health-check state in Prometheus text (kept by the health checker, not the
    /// workers' shards).
    fn health_metrics(&self) -> String {
        let snap = self.current.load();
        let mut names: Vec<&String> = snap.clusters.keys().collect();
        names.sort();
        let mut rows: [(&str, &str, Vec<String>); 3] = [
            ("sluice_host_healthy", "gauge", Vec::new()),
            ("sluice_host_health_checks_total", "counter", Vec::new()),
            (
                "sluice_host_health_check_failures_total",
                "counter",
                Vec::new(),
            ),
        ];
        for name in names {
            let set = snap.clusters[name].hosts.current.load();
            for h in &set.hosts {
                let labels = format!(
                    "cluster=\"{}\",address=\"{}\"",
                    name.replace('"', "\\\""),
                    h.address
                );
                let values = [
                    u64::from(h.health.is_healthy()),
                    h.health.checks_total.get(),
                    h.health.check_failures.get(),
                ];
                for (row, v) in rows.iter_mut().zip(values) {
                    row.2.push(format!("{}{{{labels}}} {v}", row.0));
                }
            }
        }
        let mut out = String::new();
        for (family, kind, lines) in rows {
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }

    fn clusters(&self, want_json: bool) -> Response {
        let snap = self.current.load();
        let mut names: Vec<&String> = snap.clusters.keys().collect();
        names.sort();
        let mut out = String::new();
        let mut statuses = Vec::new();
        for name in names {
            let entry = &snap.clusters[name];
            let set = entry.hosts.current.load();
            let mut hosts = Vec::new();
            let _ = writeln!(out, "{name}::observability_name::{name}");
            for h in &set.hosts {
                let addr = h.address.to_string();
                let t = self.stats.host_totals(name, &addr);
                let healthy = h.health.is_healthy();
                // Envoy's spelling: "healthy", or the flags of what failed.
                let flags = if healthy {
                    "healthy"
                } else {
                    "/failed_active_hc"
                };
                for (k, v) in [
                    ("cx_active", t.cx_active),
                    ("cx_connect_fail", t.cx_connect_fail),
                    ("cx_total", t.cx_total),
                    ("rq_active", t.rq_active),
                    ("rq_total", t.rq_total),
                    ("weight", u64::from(h.weight)),
                ] {
                    let _ = writeln!(out, "{name}::{addr}::{k}::{v}");
                }
                let _ = writeln!(out, "{name}::{addr}::health_flags::{flags}");
                hosts.push(serde_json::json!({
                    "address": addr, "weight": h.weight,
                    "health_status": if healthy { "HEALTHY" } else { "UNHEALTHY" },
                    "failed_active_health_check": !healthy,
                    "metadata": *h.metadata,
                    "stats": {"cx_active": t.cx_active, "cx_connect_fail": t.cx_connect_fail, "cx_total": t.cx_total, "rq_active": t.rq_active, "rq_total": t.rq_total},
                }));
            }
            statuses.push(serde_json::json!({"name": name, "host_statuses": hosts}));
        }
        if want_json {
            json(&serde_json::json!({"cluster_statuses": statuses}))
        } else {
            text(200, out)
        }
    }

    fn listeners(&self, want_json: bool) -> Response {
        let snap = self.current.load();
        if want_json {
            let list: Vec<_> = snap
                .bound
                .iter()
                .map(|(n, a)| serde_json::json!({"name": n, "local_address": a.to_string()}))
                .collect();
            return json(&serde_json::json!({"listener_statuses": list}));
        }
        let mut out = String::new();
        for (n, a) in &snap.bound {
            let _ = writeln!(out, "{n}::{a}");
        }
        text(200, out)
    }
}

fn help() -> String {
    let mut out = String::from("sluice admin commands are:\n");
    for (path, what) in HELP {
        let _ = writeln!(out, "  {path}: {what}");
    }
    out
}

/// `/memory`: the allocator's view (glibc's mallinfo2) and the process's resident size, under
/// Envoy's field names where one fits.
fn memory_info() -> serde_json::Value {
    let rss = crate::memory::resident_bytes();
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's own counters.
        let m = unsafe { libc::mallinfo2() };
        serde_json::json!({
            "allocated": m.uordblks.to_string(),
            "heap_size": (m.arena + m.hblkhd).to_string(),
            "pageheap_free": m.fordblks.to_string(),
            "total_physical_bytes": rss.to_string(),
        })
    }
    #[cfg(not(target_env = "gnu"))]
    serde_json::json!({ "total_physical_bytes": rss.to_string() })
}

/// `a=1&b&c=x` as key/value pairs, decoded as a form (`%XX`, `+`).
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn parse(query: &str) -> QueryParams {
        QueryParams(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

async fn serve_one(admin: &Admin, stream: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut decoder = request_decoder();
    let mut head_only = false;
    let response = loop {
        match parse_request(&mut decoder, &mut buf) {
            Ok(Some(req)) => {
                // A HEAD answer carries the length the GET's body would have, and no body.
                head_only = req.method == "HEAD";
                break admin.handle(&req);
            }
            Ok(None) => {}
            Err(e) => break text(e.status, format!("bad request: {}\n", e.reason)),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    };
    let mut head = BytesMut::with_capacity(128);
    let length = response.body.len().to_string();
    encode::response_head(
        response.status,
        encode::reason_phrase(response.status).as_bytes(),
        [
            (&b"content-type"[..], response.content_type.as_bytes()),
            (b"content-length", length.as_bytes()),
            (b"connection", b"close"),
        ],
        &mut head,
    );
    stream.write_all(&head).await?;
    if !head_only {
        stream.write_all(response.body.as_bytes()).await?;
    }
    if response.then_stop {
        let _ = stream.shutdown().await;
        // The same way out as SIGTERM: the signal loop stops the dataplane.
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    }
    stream.shutdown().await
}

/// Descriptors admin holds back for itself (see [`crate::io::fds::Reserve`]); more than one,
/// because a slot can be lost to a race with the data path.
const ADMIN_RESERVED_FDS: usize = 4;

/// Serves the admin API on an already bound listener, on a thread of its own.
pub fn spawn(listener: std::net::TcpListener, admin: Admin) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    crate::event_loop::spawn("sluice-admin", move || async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("admin endpoint cannot start: {e}");
                return;
            }
        };
        let admin = std::rc::Rc::new(admin);
        // A couple of descriptors held back, so /stats and /ready still answer when the data
        // path has used up the process's descriptors (which is when an operator looks). A
        // connection accepted in a reserved slot hands the slot back when it is done.
        let reserve = std::rc::Rc::new(std::cell::RefCell::new(crate::io::fds::Reserve::new(
            ADMIN_RESERVED_FDS,
        )));
        // Another thread can take a slot between its release and the accept meant for it: the
        // reserve is made whole again once a second, whenever descriptors are free, so a race
        // lost while the process was full does not leave admin without a reserve for the next
        // time it is.
        let mut refill = tokio::time::interval(Duration::from_secs(1));
        refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = refill.tick() => {
                    reserve.borrow_mut().refill();
                    continue;
                }
            };
            let (stream, from_reserve) = match accepted {
                Ok((stream, _)) => (stream, false),
                Err(e)
                    if crate::io::fds::is_out_of_fds(&e) && reserve.borrow_mut().release_one() =>
                {
                    match listener.accept().await {
                        Ok((stream, _)) => (stream, true),
                        Err(_) => {
                            reserve.borrow_mut().refill();
                            continue;
                        }
                    }
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    reserve.borrow_mut().refill();
                    continue;
                }
            };
            let admin = admin.clone();
            let reserve = reserve.clone();
            tokio::task::spawn_local(async move {
                let mut stream = stream;
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), serve_one(&admin, &mut stream))
                        .await;
                if from_reserve {
                    if let Ok(s) = stream.into_std() {
                        reserve.borrow_mut().reclaim(s.into());
                    }
                }
            });
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<Request>, Http1Error> {
        parse_request(&mut request_decoder(), &mut BytesMut::from(bytes))
    }

    #[test]
    fn parses_a_request_line() {
        let r = parse(b"GET /clusters?format=json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/clusters".into(),
                query: "format=json".into()
            }
        );
    }

    #[test]
    fn incomplete_then_too_large() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(None));
        let big = vec![b'a'; MAX_REQUEST_HEAD + 1];
        assert_eq!(parse(&big).unwrap_err().status, 431);
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"\xff / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad).map(|_| ()).unwrap_err().status,
                400,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
