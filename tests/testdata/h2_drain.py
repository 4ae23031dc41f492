#!/usr/bin/env python3
"""An HTTP/2 client that watches a server drain its connection, written frame by frame (the h2
library takes any GOAWAY as the end of the connection, and this client goes on after one).

  h2_drain.py HOST PORT ack      GET on stream 1; after the first GOAWAY, another GET on
                                 stream 3, acknowledging every PING
  h2_drain.py HOST PORT silent   GET on stream 1; after the first GOAWAY, nothing at all
                                 (not even the PING acknowledgement a server may wait for)

Prints JSON: {"goaways": [[seconds since the first GOAWAY, last stream id], ...],
"statuses": {stream: status}, "closed": seconds from the first GOAWAY to the server's close
(null if it did not close within 15 s)}.
"""
import json, socket, sys, time
import hpack
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port))
s.settimeout(15)
enc, dec = hpack.Encoder(), hpack.Decoder()


def get(stream_id):
    block = enc.encode([(":method", "GET"), (":path", "/"), (":authority", "drain"),
                        (":scheme", "http")])
    s.sendall(HeadersFrame(stream_id, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize())


s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
get(1)
buf, goaways, statuses, first, closed, silent = b"", [], {}, None, None, False
while True:
    try:
        data = s.recv(65536)
    except socket.timeout:
        break
    except ConnectionResetError:
        data = b""
    now = time.monotonic()
    if not data:
        closed = round(now - first, 2) if first is not None else 0
        break
    buf += data
    while len(buf) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
        if len(buf) < 9 + length:
            break
        frame.parse_body(memoryview(buf[9:9 + length]))
        buf = buf[9 + length:]
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags and not silent:
            s.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags and not silent:
            s.sendall(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
        elif isinstance(frame, HeadersFrame):
            fields = dict(dec.decode(frame.data))
            if ":status" in fields:
                statuses[str(frame.stream_id)] = int(fields[":status"])
        elif isinstance(frame, GoAwayFrame):
            if first is None:
                first = now
                if mode == "ack":
                    get(3)
                else:
                    silent = True
            goaways.append([round(now - first, 2), frame.last_stream_id])
print(json.dumps({"goaways": goaways, "statuses": statuses, "closed": closed}))
