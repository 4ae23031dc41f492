//! The xDS client's state machine, with no I/O: it takes discovery responses and says what to
//! send back and what to give the dataplane. The gRPC stream (`client.rs`) drives it; the
//! tests step it directly.
//!
//! One response at a time: `receive` decodes and validates it. A response that cannot be used
//! is NACKed at once with the reason, and the resources accepted before stay as they are. A
//! usable one yields the snapshot to push (if it changes what the dataplane serves); `finish`
//! then ACKs or NACKs it by the dataplane's answer, and asks for the RDS and EDS names the
//! accepted listeners and clusters now use.

use super::compose::{self, Composed, Resource, Resources, Snapshot, StaticResources};
use super::decode;
use super::kind::Kind;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    StateOfTheWorld,
    Delta,
}

/// A resource as it arrived: its name, its version (delta only) and its bytes.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub name: Option<String>,
    pub version: String,
    pub type_url: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub type_url: String,
    /// SotW: `version_info`; delta: `system_version_info`.
    pub version_info: String,
    pub nonce: String,
    pub resources: Vec<Incoming>,
    /// Delta only.
    pub removed: Vec<String>,
}

/// A request to send, in terms that map onto both DiscoveryRequest and DeltaDiscoveryRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    /// SotW: the version being ACKed (or the last good one, with a NACK).
    pub version_info: String,
    pub nonce: String,
    /// SotW: every name wanted (empty for a wildcard).
    pub names: Vec<String>,
    pub error: Option<String>,
    /// Delta: names added to and dropped from the subscription.
    pub subscribe: Vec<String>,
    pub unsubscribe: Vec<String>,
    /// Delta, first request on a stream: what this client already has.
    pub initial_versions: BTreeMap<String, String>,
}

impl Request {
    fn new(kind: Kind) -> Request {
        Request {
            kind,
            version_info: String::new(),
            nonce: String::new(),
            names: Vec::new(),
            error: None,
            subscribe: Vec::new(),
            unsubscribe: Vec::new(),
            initial_versions: BTreeMap::new(),
        }
    }
}

/// Counters per type, for /stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeCounters {
    pub updates: u64,
    pub acks: u64,
    pub nacks: u64,
}

#[derive(Debug, Default)]
struct TypeState {
    /// SotW: the version_info of the last accepted response.
    version_info: String,
    nonce: String,
    /// Names the server has been asked for (RDS/EDS).
    subscribed: BTreeSet<String>,
    counters: TypeCounters,
    /// The last NACK: the version refused and why.
    last_rejected: Option<(String, String)>,
}

/// A response waiting for the dataplane's answer.
pub struct Pending {
    kind: Kind,
    version_info: String,
    nonce: String,
    candidate: Resources,
    composed: Composed,
}

pub enum Step {
    /// Send this (a NACK, or an ACK of a response that changes nothing the dataplane serves).
    Reply(Vec<Request>),
    /// Push `snapshot.static_resources` to the dataplane, then call `finish`.
    Push(Box<Pending>),
}

impl Pending {
    pub fn static_resources(&self) -> &serde_json::Value {
        &self.composed.static_resources
    }
}

pub struct Client {
    mode: Mode,
    statics: StaticResources,
    resources: Resources,
    types: BTreeMap<Kind, TypeState>,
    /// What the dataplane serves (the last snapshot it applied), and its version string.
    applied: Option<Snapshot>,
    pushed_version: Option<String>,
    /// Nothing is pushed until the first sync is whole (clusters with their endpoints, listeners
    /// with their routes), as Envoy does not start serving before: a dataplane that serves a
    /// previous push keeps all of it until then.
    initialized: bool,
    responded: BTreeSet<Kind>,
    clock: fn() -> u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Client {
    pub fn new(mode: Mode, statics: StaticResources) -> Client {
        Client {
            mode,
            statics,
            resources: Resources::new(),
            types: Kind::ALL
                .into_iter()
                .map(|k| (k, TypeState::default()))
                .collect(),
            applied: None,
            pushed_version: None,
            initialized: false,
            responded: BTreeSet::new(),
            clock: unix_now,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    pub fn applied(&self) -> Option<&Snapshot> {
        self.applied.as_ref()
    }

    pub fn counters(&self, kind: Kind) -> &TypeCounters {
        &self.types[&kind].counters
    }

    pub fn version_info(&self, kind: Kind) -> &str {
        &self.types[&kind].version_info
    }

    pub fn last_rejected(&self, kind: Kind) -> Option<&(String, String)> {
        self.types[&kind].last_rejected.as_ref()
    }

    /// What the dataplane should serve now, for one that restarted; `None` before anything
    /// was accepted.
    pub fn full_snapshot(&self) -> Option<Composed> {
        if self.resources.values().all(|m| m.is_empty()) {
            return None;
        }
        Some(compose::snapshot(
            &self.resources,
            &self.statics,
            self.applied.as_ref(),
        ))
    }

    pub fn set_applied(&mut self, snapshot: Snapshot, version: String) {
        self.applied = Some(snapshot);
        self.pushed_version = Some(version);
    }

    /// The version string of the last snapshot the dataplane applied.
    pub fn pushed_version(&self) -> Option<&str> {
        self.pushed_version.as_deref()
    }

    /// The version a dataplane reports for a snapshot: each type's accepted version_info.
    pub fn version_string(&self, replacing: Option<(Kind, &str)>) -> String {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let v = match replacing {
                    Some((kind, v)) if kind == k => v,
                    _ => self.types[&k].version_info.as_str(),
                };
                format!("{}={v}", k.short())
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The version a dataplane will report once `pending` is applied.
    pub fn version_after(&self, pending: &Pending) -> String {
        self.version_string(Some((pending.kind, &pending.version_info)))
    }

    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// Ends the first sync without what is still missing (Envoy's initial_fetch_timeout): the
    /// snapshot to push, if there is anything.
    pub fn force_initialized(&mut self) -> Option<Composed> {
        self.initialized = true;
        self.full_snapshot()
    }

    /// Whether the first sync would be whole with `candidate` after a response of `kind`.
    fn whole_with(&self, kind: Kind, candidate: &Resources) -> bool {
        let responded = |k: Kind| k == kind || self.responded.contains(&k);
        let all_there = |k: Kind| {
            let have = candidate.get(&k);
            compose::wanted_names(candidate, k)
                .iter()
                .all(|n| have.is_some_and(|h| h.contains_key(n)))
        };
        responded(Kind::Cluster)
            && responded(Kind::Listener)
            && all_there(Kind::Endpoint)
            && all_there(Kind::Route)
    }

    /// The requests that open a stream: one per type, RDS and EDS with the names in use; on a
    /// reconnect SotW says which versions it has, delta which resources it has at what version.
    pub fn initial_requests(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let wanted = self.wanted(kind);
            let have: BTreeMap<String, String> = self
                .resources
                .get(&kind)
                .into_iter()
                .flatten()
                .map(|(n, r)| (n.clone(), r.version.clone()))
                .collect();
            let state = self.types.get_mut(&kind).expect("every kind");
            state.nonce.clear();
            if !kind.is_wildcard() && wanted.is_empty() {
                state.subscribed.clear();
                continue;
            }
            state.subscribed = wanted.clone();
            let mut r = Request::new(kind);
            match self.mode {
                Mode::StateOfTheWorld => {
                    r.version_info = state.version_info.clone();
                    r.names = wanted.into_iter().collect();
                }
                Mode::Delta => {
                    r.subscribe = wanted.into_iter().collect();
                    r.initial_versions = have;
                }
            }
            out.push(r);
        }
        out
    }

    fn wanted(&self, kind: Kind) -> BTreeSet<String> {
        compose::wanted_names(&self.resources, kind)
    }

    pub fn receive(&mut self, response: Response) -> Step {
        let Some(kind) = Kind::from_type_url(&response.type_url) else {
            tracing::warn!(
                "xDS: ignoring a response of type {}, which sluice did not ask for",
                response.type_url
            );
            return Step::Reply(Vec::new());
        };
        self.types.get_mut(&kind).expect("kind").counters.updates += 1;
        let candidate = match self.candidate(kind, &response) {
            Ok(c) => c,
            Err(e) => {
                return Step::Reply(vec![self.nack(
                    kind,
                    &response.version_info,
                    &response.nonce,
                    e,
                )])
            }
        };
        if let Err(e) = compose::validate(&candidate, &self.statics) {
            return Step::Reply(vec![self.nack(
                kind,
                &response.version_info,
                &response.nonce,
                e,
            )]);
        }
        let initializing = !self.initialized;
        self.responded.insert(kind);
        let whole = !initializing || self.whole_with(kind, &candidate);
        // Until the first sync is whole nothing is pushed, and nothing need be composed.
        let previous = if whole { self.applied.as_ref() } else { None };
        let composed = if whole {
            compose::snapshot(&candidate, &self.statics, previous)
        } else {
            compose::snapshot(&Resources::new(), &self.statics, None)
        };
        let pending = Pending {
            kind,
            version_info: response.version_info,
            nonce: response.nonce,
            candidate,
            composed,
        };
        if !whole {
            return Step::Reply(self.commit(pending, false));
        }
        self.initialized = true;
        let unchanged = self
            .applied
            .as_ref()
            .is_some_and(|a| a.fingerprint == pending.composed.snapshot.fingerprint);
        if unchanged && !initializing {
            Step::Reply(self.commit(pending, false))
        } else {
            Step::Push(Box::new(pending))
        }
    }

    /// The resources of `kind` as they would be after `response`; an error if any is unusable.
    fn candidate(&self, kind: Kind, response: &Response) -> Result<Resources, String> {
        let now = (self.clock)();
        let mut next = self.resources.get(&kind).cloned().unwrap_or_default();
        let previous = next.clone();
        if self.mode == Mode::StateOfTheWorld && kind.is_wildcard() {
            // A SotW LDS/CDS response is the whole set: what it leaves out is removed.
            next.clear();
        }
        let mut seen = BTreeSet::new();
        for incoming in &response.resources {
            if incoming.type_url != response.type_url {
                return Err(format!(
                    "a resource of type {} in a {} response",
                    incoming.type_url, response.type_url
                ));
            }
            let json =
                decode::to_json(&incoming.type_url, &incoming.bytes).map_err(
                    |e| match &incoming.name {
                        Some(n) => format!("{} \"{n}\": {e}", kind.noun()),
                        None => format!("a {}: {e}", kind.noun()),
                    },
                )?;
            let name = kind
                .name_of(&json)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("a {} without a name", kind.noun()))?
                .to_string();
            if let Some(declared) = &incoming.name {
                if *declared != name {
                    return Err(format!(
                        "{} \"{declared}\" holds a resource named \"{name}\"",
                        kind.noun()
                    ));
                }
            }
            if !seen.insert(name.clone()) {
                return Err(format!("{} \"{name}\" appears twice", kind.noun()));
            }
            let version = match self.mode {
                Mode::Delta => incoming.version.clone(),
                Mode::StateOfTheWorld => response.version_info.clone(),
            };
            // An unchanged resource keeps its version and time, as Envoy reports it.
            let fresh = Resource::new(kind, version, &json, now);
            let resource = match previous.get(&name) {
                Some(old) if old.text == fresh.text => old.clone(),
                _ => fresh,
            };
            next.insert(name, resource);
        }
        for name in &response.removed {
            next.remove(name);
        }
        let mut all = self.resources.clone();
        all.insert(kind, next);
        Ok(all)
    }

    fn nack(&mut self, kind: Kind, version: &str, nonce: &str, error: String) -> Request {
        tracing::warn!(
            type_url = kind.type_url(),
            version,
            "xDS update rejected, the previous config keeps serving: {error}"
        );
        let state = self.types.get_mut(&kind).expect("kind");
        state.counters.nacks += 1;
        state.last_rejected = Some((version.to_string(), error.clone()));
        state.nonce = nonce.to_string();
        let mut r = Request::new(kind);
        r.version_info = state.version_info.clone();
        r.nonce = nonce.to_string();
        r.names = state.subscribed.iter().cloned().collect();
        r.error = Some(error);
        r
    }

    /// Settles a response: `Ok` if the dataplane applied its snapshot (or there was nothing to
    /// apply), `Err` with the dataplane's reason if not.
    pub fn finish(&mut self, pending: Pending, outcome: Result<(), String>) -> Vec<Request> {
        if let Err(e) = outcome {
            let (kind, version, nonce) = (pending.kind, pending.version_info, pending.nonce);
            return vec![self.nack(
                kind,
                &version,
                &nonce,
                format!("the dataplane refused it: {e}"),
            )];
        }
        self.commit(pending, true)
    }

    /// Accepts a response: ACKs it and follows the names it makes wanted.
    fn commit(&mut self, pending: Pending, pushed: bool) -> Vec<Request> {
        let Pending {
            kind,
            version_info,
            nonce,
            candidate,
            composed,
        } = pending;
        let snapshot = composed.snapshot;
        if pushed {
            self.pushed_version = Some(self.version_string(Some((kind, &version_info))));
            self.applied = Some(snapshot);
        } else if let Some(applied) = &mut self.applied {
            // Nothing the dataplane serves changed, but what warms may have.
            applied.warming = snapshot.warming;
        }
        self.resources = candidate;
        let state = self.types.get_mut(&kind).expect("kind");
        state.counters.acks += 1;
        state.version_info = version_info.clone();
        state.nonce = nonce.clone();
        let mut ack = Request::new(kind);
        ack.version_info = version_info;
        ack.nonce = nonce;
        ack.names = state.subscribed.iter().cloned().collect();
        let mut out = vec![ack];
        out.extend(self.resubscribe());
        out
    }

    /// Follows the RDS/EDS names the accepted listeners and clusters use; drops what is no
    /// longer used.
    fn resubscribe(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        for kind in [Kind::Endpoint, Kind::Route] {
            let wanted = self.wanted(kind);
            let state = self.types.get_mut(&kind).expect("kind");
            if wanted == state.subscribed {
                continue;
            }
            let mut r = Request::new(kind);
            match self.mode {
                Mode::StateOfTheWorld => {
                    r.version_info = state.version_info.clone();
                    r.nonce = state.nonce.clone();
                    r.names = wanted.iter().cloned().collect();
                }
                Mode::Delta => {
                    r.subscribe = wanted.difference(&state.subscribed).cloned().collect();
                    r.unsubscribe = state.subscribed.difference(&wanted).cloned().collect();
                }
            }
            if let Some(have) = self.resources.get_mut(&kind) {
                have.retain(|name, _| wanted.contains(name));
            }
            state.subscribed = wanted;
            out.push(r);
        }
        out
    }
}
