#!/usr/bin/env python3
"""An HTTP/1.1 upstream for sluice's HTTP tests (Python's own http.server, threaded).

  GET  /headers          the request's method, path and headers as JSON
  GET  /status/N         answers status N
  GET  /flaky/KEY/N      503 for the first N requests with this KEY, then 200 "recovered"
  GET  /slow/MS          answers 200 after MS milliseconds
  GET  /big/N            N bytes (a repeating pattern), chunked, in 64 KiB writes
  GET  /trickle/N/MS     200 at once, then N chunks "tick\\n", one every MS milliseconds
  POST /echo             streams the request body back (chunked) as it arrives
  POST /flaky/KEY/N      reads the body; 503 for the first N with this KEY, then 200
                         "recovered N BYTES SHA256" of the body
  GET  /ws               a websocket echo (RFC 6455 handshake, then every byte back)
  POST /expect           reads the body; 200 "expect=EXPECT body=BODY" (the Expect it got)
  POST /no100/expect     the same, but never answers Expect: 100-continue with a 100
  anything else          200 "upstream PORT PATH"

Usage: http_upstream.py PORT [ADDRESS]; prints "ready" once listening.
"""
import base64, hashlib, http.server, json, socketserver, sys, threading, time

PORT = int(sys.argv[1])
ADDR = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
flaky = {}
lock = threading.Lock()


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in separate writes: without TCP_NODELAY the body waits for
    # the proxy's delayed ACK (40 ms) on every keep-alive exchange.
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def handle_expect_100(self):
        if self.path.startswith("/no100"):
            return True  # go on to the final answer without an interim 100
        return super().handle_expect_100()

    def reply(self, status, body=b"", ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")

    def do_GET(self):
        parts = self.path.split("?")[0].split("/")
        if parts[1:2] == ["headers"]:
            body = json.dumps({"method": self.command, "path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
            return self.reply(200, body, "application/json")
        if parts[1:2] == ["status"]:
            return self.reply(int(parts[2]), b"status %s\n" % parts[2].encode())
        if parts[1:2] == ["flaky"]:
            with lock:
                n = flaky.get(parts[2], 0)
                flaky[parts[2]] = n + 1
            if n < int(parts[3]):
                return self.reply(503, b"flaky\n")
            return self.reply(200, b"recovered after %d\n" % n)
        if parts[1:2] == ["slow"]:
            time.sleep(int(parts[2]) / 1000)
            return self.reply(200, b"slow\n")
        if parts[1:2] == ["big"]:
            n = int(parts[2])
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            block = bytes(range(256)) * 256
            while n > 0:
                piece = block[: min(n, len(block))]
                self.chunk(piece)
                n -= len(piece)
            self.wfile.write(b"0\r\n\r\n")
            return
        if parts[1:2] == ["trickle"]:
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for _ in range(int(parts[2])):
                    time.sleep(int(parts[3]) / 1000)
                    self.chunk(b"tick\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the proxy cut the response off
            return
        if parts[1:2] == ["ws"] and self.headers.get("upgrade", "").lower() == "websocket":
            key = self.headers["sec-websocket-key"]
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.send_response(101)
            self.send_header("upgrade", "websocket")
            self.send_header("connection", "Upgrade")
            self.send_header("sec-websocket-accept", accept)
            self.end_headers()
            self.wfile.flush()
            return self.ws_echo()
        return self.reply(200, b"upstream %d %s\n" % (PORT, self.path.encode()))

    def ws_echo(self):
        """Echoes websocket frames: unmasks client frames, sends them back unmasked."""
        r = self.rfile
        while True:
            head = r.read(2)
            if len(head) < 2:
                return
            op, ln = head[0], head[1] & 0x7F
            if ln == 126:
                ln = int.from_bytes(r.read(2), "big")
            elif ln == 127:
                ln = int.from_bytes(r.read(8), "big")
            mask = r.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(ln)))
            if op & 0x0F == 8:  # close
                self.wfile.write(bytes([0x88, 0]))
                return
            out = bytes([op])
            if ln < 126:
                out += bytes([ln])
            elif ln < 65536:
                out += bytes([126]) + ln.to_bytes(2, "big")
            else:
                out += bytes([127]) + ln.to_bytes(8, "big")
            self.wfile.write(out + data)
            self.wfile.flush()

    def do_POST(self):
        if self.path.startswith(("/expect", "/no100/expect")):
            body = self.read_body()
            return self.reply(200, b"expect=%s body=%s" % (self.headers.get("expect", "-").encode(), body))
        if self.path.startswith("/echo"):
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    self.chunk(self.rfile.read(size))
                    self.rfile.readline()
            else:
                n = int(self.headers.get("content-length", 0))
                while n > 0:
                    data = self.rfile.read(min(n, 65536))
                    if not data:
                        break
                    n -= len(data)
                    self.chunk(data)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/flaky/"):
            parts = self.path.split("/")
            body = self.read_body()
            with lock:
                seen = flaky.get(parts[2], 0)
                flaky[parts[2]] = seen + 1
            if seen < int(parts[3]):
                return self.reply(503, b"flaky\n")
            digest = hashlib.sha256(body).hexdigest().encode()
            return self.reply(200, b"recovered %d %d %s\n" % (seen, len(body), digest))
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        self.reply(200, b"posted %d\n" % n)

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", 0)))


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 refuses connects when tests run proxies side by
    # side against one upstream.
    request_queue_size = 1024


srv = S((ADDR, PORT), H)
print("ready", flush=True)
srv.serve_forever()
