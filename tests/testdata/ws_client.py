#!/usr/bin/env python3
"""A websocket client (the websockets library): opens ws://HOST:PORT/ws, sends COUNT text and
binary messages of growing size, checks each echo, prints JSON {"ok": n, "bad": n}."""
import asyncio, json, sys
import websockets

async def main(url, count):
    ok = bad = 0
    async with websockets.connect(url, max_size=None) as ws:
        for i in range(count):
            msg = ("hello %d " % i) * (i + 1)
            await ws.send(msg)
            ok, bad = (ok + 1, bad) if await ws.recv() == msg else (ok, bad + 1)
            blob = bytes([i % 256]) * (1000 * (i + 1))
            await ws.send(blob)
            ok, bad = (ok + 1, bad) if await ws.recv() == blob else (ok, bad + 1)
    print(json.dumps({"ok": ok, "bad": bad}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
