//! The ADS stream: connects to the xDS server (tonic, Envoy's v3 protos from `envoy-types`),
//! feeds responses to the state machine, pushes what it composes to the dataplane and sends
//! the ACKs and NACKs. Reconnects with exponential backoff and resubscribes; reconnects to the
//! dataplane when it restarts and gives it the current snapshot again.

use super::bootstrap::XdsBootstrap;
use super::kind::Kind;
use super::state::{Client, Incoming, Mode, Request, Response, Step};
use super::status;
use crate::dataplane_link::DataplaneLink;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// gRPC's INVALID_ARGUMENT, the code Envoy puts in a NACK's error_detail.
const INVALID_ARGUMENT: i32 = 3;
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Thousands of clusters with their endpoints make responses of many megabytes; gRPC's default
/// 4 MiB limit would refuse them.
const MAX_MESSAGE: usize = 1 << 30;
/// Envoy's default initial_fetch_timeout: how long the first sync may wait for resources that
/// were asked for before what has arrived is served.
const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Connection-level facts for /stats.
#[derive(Debug, Default, Clone)]
pub struct Connection {
    pub server: String,
    pub connected: bool,
    pub connects: u64,
    pub disconnects: u64,
    pub last_error: Option<String>,
}

fn node_proto(json: &serde_json::Value) -> Result<Node, String> {
    let bytes = super::decode::from_json("type.googleapis.com/envoy.config.core.v3.Node", json)
        .map_err(|e| format!("node: {e}"))?;
    prost::Message::decode(bytes.as_slice()).map_err(|e| format!("node: {e}"))
}

/// One of the two stream variants, behind one interface.
enum Outbound {
    Sotw(mpsc::Sender<DiscoveryRequest>),
    Delta(mpsc::Sender<DeltaDiscoveryRequest>),
}

enum Receivers {
    Sotw(mpsc::Receiver<DiscoveryRequest>),
    Delta(mpsc::Receiver<DeltaDiscoveryRequest>),
}

enum Inbound {
    Sotw(tonic::Streaming<DiscoveryResponse>),
    Delta(tonic::Streaming<DeltaDiscoveryResponse>),
}

impl Inbound {
    async fn next(&mut self) -> Result<Option<Response>, tonic::Status> {
        Ok(match self {
            Inbound::Sotw(s) => s.message().await?.map(|r| Response {
                type_url: r.type_url.clone(),
                version_info: r.version_info,
                nonce: r.nonce,
                resources: r
                    .resources
                    .into_iter()
                    .map(|a| Incoming {
                        name: None,
                        version: String::new(),
                        type_url: a.type_url,
                        bytes: a.value,
                    })
                    .collect(),
                removed: Vec::new(),
            }),
            Inbound::Delta(s) => s.message().await?.map(|r| Response {
                type_url: r.type_url.clone(),
                version_info: r.system_version_info,
                nonce: r.nonce,
                resources: r
                    .resources
                    .into_iter()
                    .filter_map(|res| {
                        let any = res.resource?;
                        Some(Incoming {
                            name: Some(res.name),
                            version: res.version,
                            type_url: any.type_url,
                            bytes: any.value,
                        })
                    })
                    .collect(),
                removed: r.removed_resources,
            }),
        })
    }
}

impl Outbound {
    fn channel(mode: Mode) -> (Outbound, Receivers) {
        match mode {
            Mode::StateOfTheWorld => {
                let (tx, rx) = mpsc::channel(64);
                (Outbound::Sotw(tx), Receivers::Sotw(rx))
            }
            Mode::Delta => {
                let (tx, rx) = mpsc::channel(64);
                (Outbound::Delta(tx), Receivers::Delta(rx))
            }
        }
    }

    async fn send(&self, r: Request, node: Option<&Node>) -> Result<(), String> {
        let error_detail = r.error.map(|message| Status {
            code: INVALID_ARGUMENT,
            message,
            details: Vec::new(),
        });
        let sent = match self {
            Outbound::Sotw(tx) => tx
                .send(DiscoveryRequest {
                    version_info: r.version_info,
                    node: node.cloned(),
                    resource_names: r.names,
                    type_url: r.kind.type_url().into(),
                    response_nonce: r.nonce,
                    error_detail,
                    ..Default::default()
                })
                .await
                .is_ok(),
            Outbound::Delta(tx) => tx
                .send(DeltaDiscoveryRequest {
                    node: node.cloned(),
                    type_url: r.kind.type_url().into(),
                    resource_names_subscribe: r.subscribe,
                    resource_names_unsubscribe: r.unsubscribe,
                    initial_resource_versions: r.initial_versions.into_iter().collect(),
                    response_nonce: r.nonce,
                    error_detail,
                    ..Default::default()
                })
                .await
                .is_ok(),
        };
        if sent {
            Ok(())
        } else {
            Err("the stream to the xDS server closed".into())
        }
    }
}

/// Runs the client for ever (or until the process is stopped).
pub async fn run(
    bootstrap: XdsBootstrap,
    mut client: Client,
    mut dataplane: DataplaneLink,
) -> Result<(), String> {
    let node = node_proto(&bootstrap.node)?;
    let mut conn = Connection {
        server: bootstrap.server.clone(),
        ..Default::default()
    };
    let mut backoff = BACKOFF_FIRST;
    sync_dataplane(&mut dataplane, &mut client, &conn).await;
    loop {
        match session(
            &bootstrap,
            &node,
            &mut client,
            &mut dataplane,
            &mut conn,
            &mut backoff,
        )
        .await
        {
            Ok(()) => tracing::warn!(server = %conn.server, "the xDS server ended the stream"),
            Err(e) => {
                tracing::warn!(server = %conn.server, "xDS: {e}");
                conn.last_error = Some(e);
            }
        }
        if conn.connected {
            conn.connected = false;
            conn.disconnects += 1;
        }
        report(&mut dataplane, &client, &conn).await;
        // Jitter spreads the reconnects of many sidecars after a control plane restart.
        let jitter = Duration::from_millis(u64::from(std::process::id() % 250));
        tracing::info!("reconnecting to the xDS server in {:?}", backoff + jitter);
        wait_serving(&mut dataplane, &mut client, &conn, backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Waits `delay` while keeping the dataplane link up.
async fn wait_serving(
    dataplane: &mut DataplaneLink,
    client: &mut Client,
    conn: &Connection,
    delay: Duration,
) {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = dataplane.closed() => {
                tracing::warn!("the dataplane closed its control socket");
                sync_dataplane(dataplane, client, conn).await;
            }
        }
    }
}

/// Connects to the dataplane (waiting for it as long as it takes) and, if it does not serve
/// what this client last gave it, gives it that again.
async fn sync_dataplane(dataplane: &mut DataplaneLink, client: &mut Client, conn: &Connection) {
    let mut delay = Duration::from_millis(100);
    loop {
        match dataplane.connect().await {
            Ok(hello) => {
                let current = client.full_snapshot().filter(|_| client.is_initialized());
                if let Some(composed) = current {
                    let ours = client.version_string(None);
                    if hello.version.as_deref() != client.pushed_version() {
                        tracing::info!(theirs = ?hello.version, ours = %ours, "giving the dataplane the current snapshot");
                        match dataplane.push(&ours, &composed.static_resources).await {
                            Ok(Ok(())) => client.set_applied(composed.snapshot, ours),
                            Ok(Err(e)) => {
                                tracing::error!("the dataplane refused the current snapshot: {e}")
                            }
                            Err(e) => {
                                tracing::warn!("{e}");
                                continue;
                            }
                        }
                    }
                }
                report(dataplane, client, conn).await;
                return;
            }
            Err(e) => {
                tracing::warn!("{e}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn report(dataplane: &mut DataplaneLink, client: &Client, conn: &Connection) {
    if let Err(e) = dataplane.status(status::render(client, conn)).await {
        tracing::warn!("cannot give the dataplane the xDS status: {e}");
    }
}

/// One ADS stream, from connect to its end.
async fn session(
    bootstrap: &XdsBootstrap,
    node: &Node,
    client: &mut Client,
    dataplane: &mut DataplaneLink,
    conn: &mut Connection,
    backoff: &mut Duration,
) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", bootstrap.server))
        .map_err(|e| format!("xDS server address {}: {e}", bootstrap.server))?
        .connect_timeout(bootstrap.connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the xDS server {}: {e}", bootstrap.server))?;
    let mut grpc = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    // The first requests go into the stream before it opens: a server may not answer the
    // call (send its headers) before it has a request to answer.
    let (outbound, rx) = Outbound::channel(client.mode());
    // Envoy sends the node in the first request of a stream only (and so does sluice).
    let mut node_sent = false;
    for r in client.initial_requests() {
        outbound.send(r, (!node_sent).then_some(node)).await?;
        node_sent = true;
    }
    let mut inbound = match rx {
        Receivers::Sotw(rx) => Inbound::Sotw(
            grpc.stream_aggregated_resources(ReceiverStream::new(rx))
                .await
                .map_err(|e| format!("opening the ADS stream: {e}"))?
                .into_inner(),
        ),
        Receivers::Delta(rx) => Inbound::Delta(
            grpc.delta_aggregated_resources(ReceiverStream::new(rx))
                .await
                .map_err(|e| format!("opening the delta ADS stream: {e}"))?
                .into_inner(),
        ),
    };
    conn.connected = true;
    conn.connects += 1;
    tracing::info!(server = %conn.server, mode = ?client.mode(), "connected to the xDS server");
    report(dataplane, client, conn).await;
    let first_sync_deadline = tokio::time::Instant::now() + INITIAL_FETCH_TIMEOUT;
    loop {
        let response = tokio::select! {
            r = inbound.next() => r.map_err(|e| format!("the ADS stream failed: {e}"))?,
            _ = tokio::time::sleep_until(first_sync_deadline), if !client.is_initialized() => {
                tracing::warn!("the first xDS sync is not whole after {INITIAL_FETCH_TIMEOUT:?}; serving what has arrived");
                if let Some(composed) = client.force_initialized() {
                    let version = client.version_string(None);
                    match dataplane.push(&version, &composed.static_resources).await {
                        Ok(Ok(())) => client.set_applied(composed.snapshot, version),
                        Ok(Err(e)) => tracing::error!("the dataplane refused the first snapshot: {e}"),
                        Err(e) => tracing::warn!("pushing to the dataplane: {e}"),
                    }
                }
                report(dataplane, client, conn).await;
                continue;
            }
            _ = dataplane.closed() => {
                tracing::warn!("the dataplane closed its control socket");
                sync_dataplane(dataplane, client, conn).await;
                continue;
            }
        };
        let Some(response) = response else {
            return Ok(());
        };
        *backoff = BACKOFF_FIRST;
        let kind = Kind::from_type_url(&response.type_url);
        tracing::debug!(?kind, version = %response.version_info, resources = response.resources.len(), "xDS response");
        let replies = match client.receive(response) {
            Step::Reply(replies) => replies,
            Step::Push(pending) => {
                let version = client.version_after(&pending);
                let outcome = loop {
                    match dataplane.push(&version, pending.static_resources()).await {
                        Ok(outcome) => break outcome,
                        Err(e) => {
                            // The dataplane is away: wait for it rather than NACK the server.
                            tracing::warn!("pushing to the dataplane: {e}");
                            sync_dataplane(dataplane, client, conn).await;
                        }
                    }
                };
                client.finish(*pending, outcome)
            }
        };
        for r in replies {
            outbound.send(r, None).await?;
        }
        report(dataplane, client, conn).await;
        sluice::memory::release_freed();
    }
}
