"""A small ADS server for sluice's xDS tests, built on third-party code: the Envoy v3 API
messages and the gRPC service base of PyPI's envoy-data-plane (betterproto2), served by grpclib.
It speaks both variants of ADS (state of the world and delta) and drives Envoy and sluice alike.

    python ads_server.py --port 0 --control-port 0 [--snapshot RESOURCES.json]

prints "xds PORT control PORT" once both listen (the tests' readiness signal), then serves:
  - ADS on PORT (h2c);
  - a control port taking one JSON command per line, answering one JSON line:
      {"cmd": "set", "node": "*"|ID, "version": V, "resources": {"clusters": [...],
         "endpoints": [...], "listeners": [...], "routes": [...]}}
        resources in Envoy's proto JSON; the snapshot for that node (or every node) becomes V and
        every open stream of it is told.
      {"cmd": "requests"}   every request received so far: node, type, version_info, nonce,
                            names, error_detail (NACKs), delta subscribe/unsubscribe/initial versions
      {"cmd": "streams"}    how many ADS streams are open, by node
"""

import argparse
import asyncio
import hashlib
import json
import sys
from dataclasses import dataclass as plain_dataclass

import betterproto2
from grpclib.server import Server
from pydantic.dataclasses import dataclass

from envoy_data_plane.message_pool import default_message_pool
from envoy_data_plane.google import protobuf as pb
from envoy_data_plane.envoy.service.discovery import v3 as discovery
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
# Imported for their registration in the message pool: typed_config Anys name them.
import envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.http.router.v3  # noqa: F401


@dataclass(eq=False, repr=False)
class TypedStruct(betterproto2.Message):
    """xds.type.v3.TypedStruct (envoy-data-plane has no copy): a config for a type the
    sender has no proto for (sluice's rpc_proxy filter), as a Struct."""

    type_url: str = betterproto2.field(1, betterproto2.TYPE_STRING)
    value: "pb.Struct | None" = betterproto2.field(2, betterproto2.TYPE_MESSAGE, optional=True)


default_message_pool.register_message("xds.type.v3", "TypedStruct", TypedStruct)

TYPES = {
    "clusters": ("type.googleapis.com/envoy.config.cluster.v3.Cluster", Cluster, "name"),
    "endpoints": (
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        ClusterLoadAssignment,
        "cluster_name",
    ),
    "listeners": ("type.googleapis.com/envoy.config.listener.v3.Listener", Listener, "name"),
    "routes": (
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        RouteConfiguration,
        "name",
    ),
}
BY_URL = {url: key for key, (url, _, _) in TYPES.items()}
WILDCARD = {"clusters", "listeners"}


@plain_dataclass
class Snapshot:
    version: str
    # type key -> name -> (serialized resource, its version: a digest of the bytes)
    resources: dict


def build_snapshot(version, spec):
    resources = {}
    for key, (url, cls, name_field) in TYPES.items():
        out = {}
        for item in spec.get(key, []):
            message = cls.from_dict(item)
            raw = bytes(message)
            out[item.get(name_field) or item.get("clusterName")] = (
                raw,
                hashlib.sha256(raw).hexdigest()[:12],
            )
        resources[key] = out
    return Snapshot(version, resources)


class State:
    def __init__(self):
        self.snapshots = {}  # node id or "*" -> Snapshot
        self.requests = []
        self.changed = asyncio.Condition()
        self.streams = {}
        self.nonce = 0

    def snapshot_for(self, node):
        return self.snapshots.get(node) or self.snapshots.get("*")

    def next_nonce(self):
        self.nonce += 1
        return str(self.nonce)

    def record(self, node, kind, **fields):
        entry = {"node": node, "type": kind}
        entry.update(fields)
        self.requests.append(entry)

    async def set(self, node, snapshot):
        self.snapshots[node] = snapshot
        async with self.changed:
            self.changed.notify_all()


def any_of(url, raw):
    return pb.Any(type_url=url, value=raw)


class Ads(discovery.AggregatedDiscoveryServiceBase):
    def __init__(self, state):
        self.state = state

    async def _merge(self, messages, queue):
        """Feeds the client's requests into `queue`, then None when the stream ends."""
        try:
            async for m in messages:
                await queue.put(m)
        finally:
            await queue.put(None)

    async def _watch(self, queue):
        while True:
            async with self.state.changed:
                await self.state.changed.wait()
            await queue.put("changed")

    async def _run(self, messages, on_request, on_change):
        queue = asyncio.Queue()
        feeder = asyncio.ensure_future(self._merge(messages, queue))
        watcher = asyncio.ensure_future(self._watch(queue))
        node = None
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if item == "changed":
                    if node is not None:
                        for r in on_change(node):
                            yield r
                    continue
                if item.node is not None and item.node.id:
                    node = item.node.id
                    self.state.streams[node] = self.state.streams.get(node, 0) + 1
                for r in on_request(node, item):
                    yield r
        finally:
            if node is not None:
                self.state.streams[node] -= 1
            feeder.cancel()
            watcher.cancel()

    # --- state of the world -------------------------------------------------------------
    async def stream_aggregated_resources(self, messages):
        wanted = {}  # type key -> list of names ([] = all)
        sent = {}  # type key -> version sent last

        def respond(node, key):
            snap = self.state.snapshot_for(node)
            if snap is None or key not in wanted:
                return None
            if sent.get(key) == snap.version:
                return None
            names = wanted[key]
            items = snap.resources.get(key, {})
            chosen = [n for n in items if not names or n in names]
            url = TYPES[key][0]
            sent[key] = snap.version
            return discovery.DiscoveryResponse(
                version_info=snap.version,
                resources=[any_of(url, items[n][0]) for n in chosen],
                type_url=url,
                nonce=self.state.next_nonce(),
            )

        def on_request(node, req):
            key = BY_URL.get(req.type_url)
            error = req.error_detail.message if req.error_detail else None
            self.state.record(
                node,
                req.type_url,
                variant="sotw",
                version_info=req.version_info,
                nonce=req.response_nonce,
                names=list(req.resource_names),
                error_detail=error,
            )
            if key is None:
                return []
            names = list(req.resource_names)
            if wanted.get(key) != names:
                wanted[key] = names
                sent.pop(key, None)
            elif not req.response_nonce:
                # A fresh stream's request (or a reconnect): answer unless it has this version.
                snap = self.state.snapshot_for(node)
                if snap is not None and req.version_info != snap.version:
                    sent.pop(key, None)
            r = respond(node, key)
            return [r] if r is not None else []

        def on_change(node):
            out = []
            for key in TYPES:
                r = respond(node, key)
                if r is not None:
                    out.append(r)
            return out

        async for r in self._run(messages, on_request, on_change):
            yield r

    # --- delta --------------------------------------------------------------------------
    async def delta_aggregated_resources(self, messages):
        subscribed = {}  # type key -> set of names, or None for a wildcard
        known = {}  # type key -> {name: version the client has}

        def respond(node, key):
            snap = self.state.snapshot_for(node)
            if snap is None or key not in subscribed:
                return None
            items = snap.resources.get(key, {})
            names = subscribed[key]
            have = known.setdefault(key, {})
            url = TYPES[key][0]
            changed = []
            for n, (raw, version) in items.items():
                if (names is None or n in names) and have.get(n) != version:
                    changed.append(discovery.Resource(name=n, version=version, resource=any_of(url, raw)))
                    have[n] = version
            removed = [n for n in list(have) if n not in items or (names is not None and n not in names)]
            for n in removed:
                del have[n]
            if not changed and not removed:
                return None
            return discovery.DeltaDiscoveryResponse(
                system_version_info=snap.version,
                resources=changed,
                type_url=url,
                removed_resources=removed,
                nonce=self.state.next_nonce(),
            )

        def on_request(node, req):
            key = BY_URL.get(req.type_url)
            error = req.error_detail.message if req.error_detail else None
            self.state.record(
                node,
                req.type_url,
                variant="delta",
                nonce=req.response_nonce,
                subscribe=list(req.resource_names_subscribe),
                unsubscribe=list(req.resource_names_unsubscribe),
                initial_versions=dict(req.initial_resource_versions),
                error_detail=error,
            )
            if key is None:
                return []
            first = key not in subscribed
            if first:
                known[key] = dict(req.initial_resource_versions)
                wildcard = key in WILDCARD and (
                    not req.resource_names_subscribe or "*" in req.resource_names_subscribe
                )
                subscribed[key] = None if wildcard else set()
            names = subscribed[key]
            if names is not None:
                names.update(n for n in req.resource_names_subscribe if n != "*")
                names.difference_update(req.resource_names_unsubscribe)
                for n in req.resource_names_unsubscribe:
                    known[key].pop(n, None)
            r = respond(node, key)
            return [r] if r is not None else []

        def on_change(node):
            out = []
            for key in TYPES:
                r = respond(node, key)
                if r is not None:
                    out.append(r)
            return out

        async for r in self._run(messages, on_request, on_change):
            yield r


async def control(state, reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            cmd = json.loads(line)
            if cmd["cmd"] == "set":
                await state.set(cmd.get("node", "*"), build_snapshot(cmd["version"], cmd["resources"]))
                answer = {"ok": True}
            elif cmd["cmd"] == "requests":
                answer = {"ok": True, "requests": state.requests}
            elif cmd["cmd"] == "streams":
                answer = {"ok": True, "streams": state.streams}
            else:
                answer = {"ok": False, "error": "unknown command"}
        except Exception as e:  # the test sees what was wrong with its command
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        writer.write((json.dumps(answer) + "\n").encode())
        await writer.drain()
    writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--snapshot", help="resources (as for the set command) served as version 1 to every node")
    args = p.parse_args()
    state = State()
    if args.snapshot:
        with open(args.snapshot) as f:
            await state.set("*", build_snapshot("1", json.load(f)))
    server = Server([Ads(state)])
    await server.start("127.0.0.1", args.port)
    port = server._server.sockets[0].getsockname()[1]
    # Snapshots of thousands of clusters come as one long line.
    ctl = await asyncio.start_server(
        lambda r, w: control(state, r, w), "127.0.0.1", args.control_port, limit=1 << 30
    )
    ctl_port = ctl.sockets[0].getsockname()[1]
    print(f"xds {port} control {ctl_port}", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
