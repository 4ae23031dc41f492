//! The router: one request from its head to the response head sent back, with Envoy's
//! semantics — route lookup, direct responses and redirects, the cluster and host choice
//! (weighted clusters, cluster_header, hash policy, subsets), attempts with the route's
//! timeout, per-try timeout and retry policy (previous_hosts, Envoy's jittered back-off), and
//! local replies with Envoy's statuses, bodies and response flags. The headers it writes are
//! `request_headers.rs`', the paths `rewrite.rs`', the policies' arithmetic `policy.rs`'.

use super::filters::Decision;
use super::local_reply;
use super::message::{Body, Progress, RequestHead, Response};
use super::path_normalize::{self, PathOutcome};
use super::policy::{
    backoff_ceiling_ms, hash_key, max_stream_duration, retry_on_response, with_retry_limit,
};
use super::replay::Replay;
use super::request_headers::{
    apply_request_mutations, apply_response_mutations, edge_headers, number_header, Scope,
    X_EXPECTED_TIMEOUT, X_ORIGINAL_PATH, X_SERVICE_TIME,
};
use super::rewrite::{redirect_location, rewritten_path};
use super::route_config::{
    retry_on, Action, ClusterSpec, Forward, HeaderMutations, HostRewrite, RetryPolicy, Route,
};
use super::upstream::AttemptError;
use super::{Hcm, Upstream};
use crate::config::http_options::UpstreamProtocol;
use crate::error::ProxyError;
use crate::proxy::cluster::PickRequest;
use crate::runtime::deadline::TimerPool;
use http::HeaderValue;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

/// What the connection a request arrived on says about it.
pub struct ConnInfo {
    /// The connection's peer.
    pub peer: SocketAddr,
    /// The timers of its deadlines. An HTTP/1 connection's requests come one after another, so
    /// each kind of deadline (the idle read, the route's timeout) only moves later and its timer
    /// is moved in place (see `runtime::deadline`); an HTTP/2 stream has its own.
    pub timers: TimerPool,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr) -> ConnInfo {
        ConnInfo {
            peer,
            timers: TimerPool::default(),
        }
    }
}

/// A request's outcome: the response to send and what its access log line needs.
pub struct Exchange {
    pub response: Response,
    /// Envoy's response flag (`NR`, `UH`, ...), empty when none applies.
    pub flags: &'static str,
    pub details: &'static str,
    pub upstream_host: Option<SocketAddr>,
    pub cluster: Option<Rc<Upstream>>,
    pub route_name: String,
    /// The request as forwarded (after edge headers), when an access log needs it.
    pub logged: Option<Box<RequestHead>>,
    /// The client as far as sluice trusts it (x-forwarded-for with xff_num_trusted_hops), when
    /// the request got that far.
    pub downstream: Option<SocketAddr>,
    /// When the stream's max_stream_duration runs out: a response still streaming then is
    /// cut off (Envoy resets the stream; an HTTP/1 connection is closed).
    pub deadline: Option<Instant>,
}

impl Exchange {
    /// An exchange that ends in `response`, nothing else known of it yet.
    fn answered(response: Response, flags: &'static str, details: &'static str) -> Exchange {
        Exchange {
            response,
            flags,
            details,
            upstream_host: None,
            cluster: None,
            route_name: String::new(),
            logged: None,
            downstream: None,
            deadline: None,
        }
    }

    fn local(
        status: u16,
        body: &str,
        req: &RequestHead,
        flags: &'static str,
        details: &'static str,
    ) -> Exchange {
        Exchange::answered(local_reply::reply(Some(req), status, body), flags, details)
    }

    fn failure(e: ProxyError, req: &RequestHead, details: &'static str) -> Exchange {
        Exchange::local(
            e.http_status(),
            e.envoy_body(),
            req,
            e.response_flag(),
            details,
        )
    }
}

impl Hcm {
    /// `fut`, held to a stream's max_stream_duration deadline (`Exchange::deadline`) when it
    /// has one: `None` once that ran out, counted in downstream_rq_max_duration_reached.
    pub(super) async fn within_max_duration<F: std::future::Future>(
        &self,
        timers: &TimerPool,
        deadline: Option<Instant>,
        fut: F,
    ) -> Option<F::Output> {
        let Some(d) = deadline else {
            return Some(fut.await);
        };
        let r = timers.timeout_at(d, fut).await.ok();
        if r.is_none() {
            self.stats.downstream_rq_max_duration_reached.inc();
        }
        r
    }

    /// A request whose body stopped on the stream idle timeout or the request timeout before
    /// any response came from upstream gets Envoy's 408 instead of what the broken attempt
    /// made of it; once the upstream answered, the stream is reset instead (by the writer).
    pub fn replace_if_timed_out(&self, ex: &mut Exchange, grpc: bool, progress: &Progress) {
        if ex.details == "via_upstream" {
            return;
        }
        let (body, flags, details) = if progress.timed_out.get() {
            self.stats.downstream_rq_timeout.inc();
            ("request timeout", "", "request_overall_timeout")
        } else if progress.idled.get() {
            ("stream timeout", "SI", "stream_idle_timeout")
        } else {
            return;
        };
        ex.response = local_reply::reply_shaped(grpc, 408, body);
        self.finish_response(&mut ex.response);
        ex.flags = flags;
        ex.details = details;
    }

    /// Serves one request to the point where its response head is known.
    ///
    /// The head comes boxed because it is moved from future to future on the way to the
    /// upstream: by value each move copies 144 bytes into memory of the connection's future
    /// that is cold when many connections are open; a box moves 8 bytes, and its memory is the
    /// allocator's most recently freed, still in cache.
    pub async fn handle(
        self: &Rc<Self>,
        mut head: Box<RequestHead>,
        body: Body,
        conn: &ConnInfo,
    ) -> Exchange {
        if let Some(ex) = self.normalize_path(&mut head) {
            return ex;
        }
        let downstream = edge_headers(
            &self.config,
            &self.rng,
            &mut head,
            conn.peer,
            &self.routes.config.internal_only_headers,
        );
        let logged = (!self.config.access_log.is_empty()).then(|| head.clone());
        let mut ex = self.route_and_forward(head, body, conn, downstream).await;
        if ex.logged.is_none() {
            ex.logged = logged;
        }
        ex.downstream = Some(downstream);
        self.finish_response(&mut ex.response);
        ex
    }

    /// Applies the connection manager's path options; a request they refuse or redirect is
    /// answered here, before any filter or route.
    fn normalize_path(&self, head: &mut RequestHead) -> Option<Exchange> {
        let outcome = match path_normalize::apply(&self.config.paths, &head.path) {
            // A gRPC client cannot follow a redirect: Envoy refuses those requests instead.
            PathOutcome::Redirect(_) if head.is_grpc() => PathOutcome::Reject,
            outcome => outcome,
        };
        match outcome {
            PathOutcome::Unchanged => None,
            PathOutcome::Rewritten(p) => {
                head.path = p.into();
                None
            }
            PathOutcome::Reject => {
                self.stats.downstream_rq_failed_path_normalization.inc();
                let mut ex = Exchange::local(400, "", head, "", "path_normalization_failed");
                self.finish_response(&mut ex.response);
                Some(ex)
            }
            PathOutcome::Redirect(location) => {
                self.stats
                    .downstream_rq_redirected_with_normalized_path
                    .inc();
                let mut ex = Exchange::local(307, "", head, "", "path_normalization_redirect");
                if let Ok(v) = HeaderValue::from_str(&location) {
                    ex.response.head.headers.insert(http::header::LOCATION, v);
                }
                self.finish_response(&mut ex.response);
                Some(ex)
            }
        }
    }

    async fn route_and_forward(
        self: &Rc<Self>,
        mut head: Box<RequestHead>,
        body: Body,
        conn: &ConnInfo,
        // The trusted client address (see `Exchange::downstream`).
        client: SocketAddr,
    ) -> Exchange {
        for f in &self.config.filters.chain {
            if let Decision::Reply(r) = f.on_request(&mut head) {
                return Exchange::answered(r, "", "filter_reply");
            }
        }
        let table = self.routes.clone();
        let Some((vh, route)) = table.route(&head) else {
            self.stats.no_route.inc();
            return Exchange::failure(ProxyError::NoRoute, &head, "route_not_found");
        };
        let mutations = [&route.headers, &vh.headers, &table.config.headers];
        let scope = Scope {
            peer: client,
            upstream_host: None,
            cluster: None,
            route_name: &route.name,
            start: std::time::SystemTime::now(),
        };
        let forward = match &route.action {
            Action::Direct { status, body } => {
                self.stats.rq_direct_response.inc();
                let mut r = Response::local(*status, "");
                if !body.is_empty() {
                    r.head.headers.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain"),
                    );
                    r.head
                        .headers
                        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                    r.body = Body::Full(body.clone());
                }
                return answered_by_route(r, &mutations, route, &head, &scope);
            }
            Action::Redirect(rd) => {
                self.stats.rq_redirect.inc();
                let mut r = Response::local(rd.status, "");
                if let Ok(v) = HeaderValue::from_str(&redirect_location(rd, &head, route)) {
                    r.head.headers.insert(http::header::LOCATION, v);
                }
                return answered_by_route(r, &mutations, route, &head, &scope);
            }
            Action::Forward(f) => f,
        };
        // Upgrades (websocket) only where the connection manager or the route allows them.
        if let Some(up) = head.headers.get(http::header::UPGRADE) {
            let kind = up.to_str().unwrap_or("").to_ascii_lowercase();
            let allowed = self.config.upgrades.contains(&kind) || forward.upgrades.contains(&kind);
            if !allowed {
                self.stats.downstream_rq_ws_on_non_ws_route.inc();
                let mut ex = Exchange::local(403, "", &head, "", "upgrade_failed");
                apply_response_mutations(&mut ex.response.head, &mutations, Some(&head), &scope);
                return named(ex, route);
            }
        }
        let Some(upstream) = self.pick_cluster(forward, &head) else {
            self.stats.no_cluster.inc();
            let mut ex = Exchange::local(
                forward.cluster_not_found_status,
                "",
                &head,
                "NC",
                "cluster_not_found",
            );
            apply_response_mutations(&mut ex.response.head, &mutations, Some(&head), &scope);
            return named(ex, route);
        };
        let timeout = forward.timeout;
        let max_duration = max_stream_duration(forward, &head, self.config.max_stream_duration);
        let grpc = head.is_grpc();
        let retry = forward.retry_policy.as_ref().or(vh.retry_policy.as_ref());
        self.rewrite(&mut head, forward, route);
        apply_request_mutations(&mut head, &mutations, &scope);
        let expected = retry.and_then(|r| r.per_try_timeout).or(timeout);
        if let (Some(t), false) = (expected, self.config.filters.router.suppress_envoy_headers) {
            head.headers
                .insert(X_EXPECTED_TIMEOUT, number_header(t.as_millis() as u64));
        }
        let hash = hash_key(&forward.hash_policy, &head, client);
        // The request as forwarded, for response values that name it (rarely needed).
        let kept = mutations
            .iter()
            .any(|m| m.formats_response)
            .then(|| head.clone());
        // Pinned where it is made: awaiting it by value would copy the whole future (nearly
        // 2 KiB, mostly space for states not yet reached) into this one's, a cache line
        // written cold per 64 bytes when many connections are open.
        let attempts = std::pin::pin!(self.attempts(
            upstream.clone(),
            head,
            body,
            forward,
            retry,
            timeout,
            hash,
            &conn.timers,
        ));
        // The stream's deadline counts from its head, as Envoy's does; the response body and
        // an upgraded tunnel are held to it too (see `Exchange::deadline`).
        let deadline = max_duration.map(|d| Instant::now() + d);
        let mut ex = self
            .within_max_duration(&conn.timers, deadline, attempts)
            .await
            .unwrap_or_else(|| {
                // Envoy's max stream duration: 408, DEADLINE_EXCEEDED to a gRPC client.
                Exchange::answered(
                    local_reply::reply_with_grpc_status(
                        grpc,
                        408,
                        "downstream duration timeout",
                        4,
                    ),
                    "DT",
                    "max_duration_timeout",
                )
            });
        let scope = Scope {
            upstream_host: ex.upstream_host,
            cluster: Some(&upstream.cluster.config.name),
            ..scope
        };
        apply_response_mutations(&mut ex.response.head, &mutations, kept.as_deref(), &scope);
        ex.cluster = Some(upstream.clone());
        ex.deadline = deadline;
        named(ex, route)
    }

    fn pick_cluster(&self, forward: &Forward, head: &RequestHead) -> Option<Rc<Upstream>> {
        match &forward.cluster {
            ClusterSpec::Cluster(name) => self.clusters.get(name.as_str()).cloned(),
            ClusterSpec::Weighted(list) => {
                let total: u64 = list.iter().map(|w| u64::from(w.weight)).sum();
                let mut r = self.rng.borrow_mut().below(total.max(1));
                let chosen = list.iter().find(|w| {
                    let w64 = u64::from(w.weight);
                    if r < w64 {
                        true
                    } else {
                        r -= w64;
                        false
                    }
                })?;
                self.clusters.get(chosen.name.as_str()).cloned()
            }
            ClusterSpec::Header(name) => {
                let v = head.headers.get(name)?.to_str().ok()?;
                self.clusters.get(v).cloned()
            }
        }
    }

    fn rewrite(&self, head: &mut RequestHead, forward: &Forward, route: &Route) {
        if let Some(p) = rewritten_path(&head.path, forward, route) {
            let original = std::mem::replace(&mut head.path, p.into());
            if head.path != original && !self.config.filters.router.suppress_envoy_headers {
                if let Ok(v) = HeaderValue::from_str(&original) {
                    head.headers.insert(X_ORIGINAL_PATH, v);
                }
            }
        }
        match &forward.host_rewrite {
            HostRewrite::None | HostRewrite::Auto => {}
            HostRewrite::Literal(h) => head.authority = h.as_str().into(),
            HostRewrite::Header(name) => {
                if let Some(v) = head.headers.get(name).and_then(|v| v.to_str().ok()) {
                    head.authority = v.to_string().into();
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempts(
        &self,
        upstream: Rc<Upstream>,
        mut head: Box<RequestHead>,
        body: Body,
        forward: &Forward,
        retry: Option<&RetryPolicy>,
        timeout: Option<Duration>,
        hash: Option<u64>,
        timers: &TimerPool,
    ) -> Exchange {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let cluster = &upstream.cluster;
        let stats = &cluster.stats;
        // A streamed body is held for retries only when the route can retry.
        let (first, replay) = Replay::start(
            body,
            retry.is_some_and(|r| r.num_retries > 0),
            self.buffer_limit,
        );
        let can_replay = |r: &Option<Replay>| r.as_ref().is_some_and(Replay::can_replay);
        let mut body = Some(first);
        // The hosts tried so far (a request rarely has more than a few attempts).
        let mut tried: smallvec::SmallVec<[usize; 4]> = smallvec::SmallVec::new();
        let mut retries_left = retry.map_or(0, |r| r.num_retries);
        let mut retry_number = 0u32;
        let mut transparent_left = 1u32;
        let protocol = match upstream.pool.options().protocol {
            UpstreamProtocol::Http1 => UpstreamProtocol::Http1,
            UpstreamProtocol::Http2 => UpstreamProtocol::Http2,
            UpstreamProtocol::UseDownstream if head.version == http::Version::HTTP_2 => {
                UpstreamProtocol::Http2
            }
            UpstreamProtocol::UseDownstream => UpstreamProtocol::Http1,
        };
        let auto_host = forward.host_rewrite == HostRewrite::Auto;
        loop {
            let picked = pick_host(cluster, forward, retry, hash, &tried);
            let Some((index, host)) = picked else {
                if !cluster.all_backing_off(Some(&forward.metadata_match)) {
                    stats.upstream_rq_no_healthy.inc();
                    return Exchange::failure(
                        ProxyError::NoHealthyUpstream,
                        &head,
                        "no_healthy_upstream",
                    );
                }
                // Every host's connect just failed and it is backing off: the request gets
                // the connect failure Envoy's fresh connect attempt would have given (503 UF),
                // without yet another connect, and may retry once its back-off is over.
                let retried = retry.is_some_and(|r| r.retry_on & RETRIED_ON_CONNECT_FAILURE != 0);
                let replayable = can_replay(&replay);
                if retried
                    && self
                        .another_try(
                            retry,
                            &mut retries_left,
                            &mut retry_number,
                            replayable,
                            deadline,
                            stats,
                        )
                        .await
                {
                    continue;
                }
                let mut ex = Exchange::failure(
                    ProxyError::ConnectFailure,
                    &head,
                    "upstream_reset_before_response_started{connection_failure}",
                );
                if retried && retries_left == 0 {
                    ex.flags = with_retry_limit(ex.flags);
                }
                return ex;
            };
            tried.push(index);
            if auto_host {
                head.authority = host.address.to_string().into();
            }
            let next = || {
                replay
                    .as_ref()
                    .filter(|r| r.can_replay())
                    .map(Replay::again)
            };
            let Some(this_body) = body.take().or_else(next) else {
                // A streamed body already went to an earlier attempt.
                return Exchange::failure(
                    ProxyError::UpstreamReset,
                    &head,
                    "upstream_reset_before_response_started",
                );
            };
            stats.upstream_rq_total.inc();
            host.stats.rq_total.inc();
            let attempt_start = Instant::now();
            let per_try = retry.and_then(|r| r.per_try_timeout);
            let attempt_deadline = match (per_try.map(|t| attempt_start + t), deadline) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
            let send = async {
                match protocol {
                    UpstreamProtocol::Http2 => {
                        upstream.pool.send_h2(host.address, &head, this_body).await
                    }
                    _ => upstream.pool.send_h1(host.address, &head, this_body).await,
                }
            };
            let result = match attempt_deadline {
                Some(d) => timers.timeout_at(d, send).await.ok(),
                None => Some(send.await),
            };
            let per_try_expired = result.is_none() && deadline.is_none_or(|d| Instant::now() < d);
            let failure = match result {
                Some(Ok(mut resp)) => {
                    let status = resp.head.status;
                    let replayable = can_replay(&replay);
                    if retry.is_some_and(|r| retry_on_response(r, status, &resp.head.headers))
                        && self
                            .another_try(
                                retry,
                                &mut retries_left,
                                &mut retry_number,
                                replayable,
                                deadline,
                                stats,
                            )
                            .await
                    {
                        count_status(stats, status);
                        continue;
                    }
                    if retry_number > 0 {
                        stats.upstream_rq_retry_success.inc();
                    }
                    count_status(stats, status);
                    if !self.config.filters.router.suppress_envoy_headers {
                        resp.head.headers.insert(
                            X_SERVICE_TIME,
                            number_header(attempt_start.elapsed().as_millis() as u64),
                        );
                    }
                    let exhausted = retries_left == 0
                        && retry.is_some_and(|r| {
                            r.num_retries > 0 && retry_on_response(r, status, &resp.head.headers)
                        });
                    let flags = if exhausted { "URX" } else { "" };
                    return Exchange {
                        upstream_host: Some(host.address),
                        ..Exchange::answered(resp, flags, "via_upstream")
                    };
                }
                None if per_try_expired => {
                    stats.upstream_rq_per_try_timeout.inc();
                    (
                        ProxyError::PerTryTimeout,
                        retry_on::FIVE_XX
                            | retry_on::GATEWAY_ERROR
                            | retry_on::RESET
                            | retry_on::PER_TRY_TIMEOUT_ONLY,
                    )
                }
                None => {
                    stats.upstream_rq_timeout.inc();
                    self.stats.downstream_rq_timeout.inc();
                    let mut ex =
                        Exchange::failure(ProxyError::Timeout, &head, "upstream_response_timeout");
                    ex.upstream_host = Some(host.address);
                    return ex;
                }
                Some(Err(AttemptError::Connect(e))) => {
                    if !e.is_local() {
                        host.note_connect_failure();
                    }
                    stats.upstream_cx_connect_fail.inc();
                    host.stats.cx_connect_fail.inc();
                    if matches!(e, crate::io::connect::ConnectError::Timeout) {
                        stats.upstream_cx_connect_timeout.inc();
                    }
                    tracing::debug!(host = %host.address, error = %e, "upstream connect failed");
                    (ProxyError::ConnectFailure, RETRIED_ON_CONNECT_FAILURE)
                }
                Some(Err(AttemptError::Reset { reused: true }))
                    if transparent_left > 0 && can_replay(&replay) =>
                {
                    // The pooled connection was closed by the server as the request went out:
                    // nothing was processed, so this does not count as a retry.
                    transparent_left -= 1;
                    continue;
                }
                Some(Err(AttemptError::Reset { .. })) => {
                    stats.upstream_rq_rx_reset.inc();
                    (
                        ProxyError::UpstreamReset,
                        retry_on::FIVE_XX | retry_on::RESET,
                    )
                }
                Some(Err(AttemptError::Refused)) => {
                    stats.upstream_rq_rx_reset.inc();
                    (
                        ProxyError::UpstreamReset,
                        retry_on::FIVE_XX | retry_on::REFUSED_STREAM | retry_on::RESET,
                    )
                }
                Some(Err(AttemptError::Protocol(e))) => {
                    stats.upstream_cx_protocol_error.inc();
                    tracing::debug!(host = %host.address, "upstream protocol error: {e}");
                    (
                        ProxyError::UpstreamProtocolError,
                        retry_on::FIVE_XX | retry_on::RESET,
                    )
                }
            };
            let (error, retried_by) = failure;
            let wanted = retry.is_some_and(|r| r.retry_on & retried_by != 0);
            let replayable = can_replay(&replay);
            if wanted
                && self
                    .another_try(
                        retry,
                        &mut retries_left,
                        &mut retry_number,
                        replayable,
                        deadline,
                        stats,
                    )
                    .await
            {
                continue;
            }
            let details = match error {
                ProxyError::ConnectFailure => {
                    "upstream_reset_before_response_started{connection_failure}"
                }
                ProxyError::PerTryTimeout => "upstream_per_try_timeout",
                _ => "upstream_reset_before_response_started{connection_termination}",
            };
            let mut ex = Exchange::failure(error, &head, details);
            ex.upstream_host = Some(host.address);
            if wanted && retries_left == 0 {
                // The policy would have retried this, but its retries are spent (Envoy's URX).
                ex.flags = with_retry_limit(ex.flags);
            }
            return ex;
        }
    }

    /// Another try, when the policy has one left and the body can be sent again: waits out the
    /// back-off (`false` if the deadline would pass first) and counts the retry.
    async fn another_try(
        &self,
        retry: Option<&RetryPolicy>,
        left: &mut u32,
        number: &mut u32,
        replayable: bool,
        deadline: Option<Instant>,
        stats: &crate::stats::ClusterStats,
    ) -> bool {
        if *left == 0 || !replayable || !self.back_off(retry, number, deadline).await {
            return false;
        }
        *left -= 1;
        stats.upstream_rq_retry.inc();
        true
    }

    /// Waits out Envoy's fully jittered exponential back-off before retry number
    /// `retry_number + 1`; `false` when the request's deadline would pass first.
    async fn back_off(
        &self,
        retry: Option<&RetryPolicy>,
        retry_number: &mut u32,
        deadline: Option<Instant>,
    ) -> bool {
        let Some(r) = retry else { return false };
        *retry_number += 1;
        let ceiling = backoff_ceiling_ms(r, *retry_number);
        let wait = Duration::from_millis(self.rng.borrow_mut().below(ceiling));
        let until = Instant::now() + wait;
        if deadline.is_some_and(|d| until >= d) {
            return false;
        }
        tokio::time::sleep_until(until).await;
        true
    }

    /// What every response gets on its way out: `date` and `server`.
    fn finish_response(&self, r: &mut Response) {
        let h = &mut r.head.headers;
        if !h.contains_key(http::header::DATE) {
            h.insert(http::header::DATE, super::time_text::date_header());
        }
        use super::config::ServerHeader;
        let set = match self.config.server_header {
            ServerHeader::Overwrite => true,
            ServerHeader::AppendIfAbsent => !h.contains_key(http::header::SERVER),
            ServerHeader::PassThrough => false,
        };
        if set {
            h.insert(http::header::SERVER, self.server_name.clone());
        }
    }
}

/// A direct response or redirect of `route`, with its header mutations.
fn answered_by_route(
    mut r: Response,
    mutations: &[&HeaderMutations; 3],
    route: &Route,
    request: &RequestHead,
    scope: &Scope<'_>,
) -> Exchange {
    apply_response_mutations(&mut r.head, mutations, Some(request), scope);
    named(Exchange::answered(r, "", "direct_response"), route)
}

/// The retry_on conditions a failed connect meets.
const RETRIED_ON_CONNECT_FAILURE: u32 =
    retry_on::FIVE_XX | retry_on::GATEWAY_ERROR | retry_on::CONNECT_FAILURE | retry_on::RESET;

/// A host for the next attempt. With the previous_hosts predicate, as Envoy: the balancer
/// picks, and a host an earlier attempt used is picked again up to
/// host_selection_retry_max_attempts times, after which the last pick stands. A hash-based pick
/// would only repeat itself, so there the balancer is told which hosts to skip instead.
fn pick_host(
    cluster: &crate::proxy::cluster::Cluster,
    forward: &Forward,
    retry: Option<&RetryPolicy>,
    hash: Option<u64>,
    tried: &[usize],
) -> Option<(usize, Rc<crate::proxy::cluster::Host>)> {
    let request = |tried| PickRequest {
        tried,
        hash,
        subset: Some(&forward.metadata_match),
    };
    let Some(r) = retry.filter(|r| r.previous_hosts && !tried.is_empty()) else {
        return cluster.pick(&request(&[]));
    };
    if hash.is_some() {
        return cluster
            .pick(&request(tried))
            .or_else(|| cluster.pick(&request(&[])));
    }
    let mut picked = cluster.pick(&request(&[]));
    for _ in 0..r.host_selection_max_attempts {
        match &picked {
            Some((i, _)) if tried.contains(i) => picked = cluster.pick(&request(&[])),
            _ => break,
        }
    }
    picked
}

fn named(mut ex: Exchange, route: &Route) -> Exchange {
    ex.route_name = route.name.clone();
    ex
}

fn count_status(stats: &crate::stats::ClusterStats, status: u16) {
    match status / 100 {
        1 => stats.upstream_rq_1xx.inc(),
        2 => stats.upstream_rq_2xx.inc(),
        3 => stats.upstream_rq_3xx.inc(),
        4 => stats.upstream_rq_4xx.inc(),
        _ => stats.upstream_rq_5xx.inc(),
    }
}
