#!/usr/bin/env python3
"""gRPC peers with grpcio's generic (bytes in, bytes out) API, so no generated code is needed.

  grpc_peer.py server PORT         serves echo.Echo: Unary, ServerStream, ClientStream, Bidi,
                                   Sleep and SleepCapped (wait the request's seconds; for
                                   deadlines and cancellation), Flaky and FlakyStream
                                   (UNAVAILABLE the first time a key is seen)
  grpc_peer.py client TARGET       runs every case through TARGET; prints JSON of results
  grpc_peer.py retry TARGET KEY    calls Flaky and FlakyStream once each with keys from KEY
"""
import json, sys, threading, time
from concurrent import futures
import grpc

SVC = "echo.Echo"


def serve(port):
    def unary(req, ctx):
        return req

    def server_stream(req, ctx):
        n = int(req.decode() or "0")
        for i in range(n):
            yield b"item %d" % i

    def client_stream(it, ctx):
        total = 0
        count = 0
        for m in it:
            total += len(m)
            count += 1
        return b"%d messages %d bytes" % (count, total)

    def bidi(it, ctx):
        for m in it:
            yield m[::-1]

    def sleep(req, ctx):
        secs = float(req.decode())
        end = time.time() + secs
        while time.time() < end and ctx.is_active():
            time.sleep(0.01)
        return b"slept"

    seen = set()
    lock = threading.Lock()

    def first_time(key):
        with lock:
            new = key not in seen
            seen.add(key)
        return new

    def flaky(req, ctx):
        if first_time(req):
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return b"recovered " + req

    def flaky_stream(it, ctx):
        msgs = list(it)
        if first_time(msgs[0]):
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return b"%d messages %d bytes" % (len(msgs), sum(len(m) for m in msgs))

    handlers = {
        "Flaky": grpc.unary_unary_rpc_method_handler(flaky),
        "FlakyStream": grpc.stream_unary_rpc_method_handler(flaky_stream),
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "SleepCapped": grpc.unary_unary_rpc_method_handler(sleep),
    }
    opts = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=opts)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SVC, handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def client(target):
    opts = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
    ch = grpc.insecure_channel(target, options=opts)
    m = lambda name, kind: getattr(ch, kind)("/%s/%s" % (SVC, name))
    out = {}
    out["unary"] = m("Unary", "unary_unary")(b"hello", timeout=10).decode()
    big = bytes(range(256)) * (4 * 4096)  # 4 MiB
    out["unary_4mb_ok"] = m("Unary", "unary_unary")(big, timeout=20) == big
    out["server_stream"] = [x.decode() for x in m("ServerStream", "unary_stream")(b"5", timeout=10)]
    out["client_stream"] = m("ClientStream", "stream_unary")(iter([b"a" * 10, b"b" * 20, b"c" * 30]), timeout=10).decode()
    out["bidi"] = [x.decode() for x in m("Bidi", "stream_stream")(iter([b"abc", b"hello"]), timeout=10)]
    try:
        m("SleepCapped", "unary_unary")(b"5", timeout=3)
        out["deadline"] = "no error"
    except grpc.RpcError as e:
        out["deadline"] = e.code().name
    fut = m("Sleep", "unary_unary").future(b"5", timeout=10)
    time.sleep(0.3)
    fut.cancel()
    try:
        fut.result()
        out["cancel"] = "completed"
    except grpc.FutureCancelledError:
        out["cancel"] = "CANCELLED"
    except grpc.RpcError as e:
        out["cancel"] = e.code().name
    try:
        grpc.insecure_channel(target).unary_unary("/nope.Nope/Missing")(b"x", timeout=5)
        out["unknown_service"] = "OK"
    except grpc.RpcError as e:
        out["unknown_service"] = e.code().name
    print(json.dumps(out))


def retry(target, key):
    ch = grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)])
    m = lambda name, kind: getattr(ch, kind)("/%s/%s" % (SVC, name))
    out = {}
    for name, call in [("unary", lambda: m("Flaky", "unary_unary")(key.encode() + b"-u", timeout=10)),
                       ("client_stream", lambda: m("FlakyStream", "stream_unary")(
                           iter([key.encode() + b"-s", b"x" * 100000, b"y" * 200000]), timeout=10))]:
        try:
            out[name] = call().decode().replace(key, "KEY")
        except grpc.RpcError as e:
            out[name] = e.code().name
    print(json.dumps(out))


if sys.argv[1] == "server":
    serve(int(sys.argv[2]))
elif sys.argv[1] == "retry":
    retry(sys.argv[2], sys.argv[3])
else:
    client(sys.argv[2])
