#!/usr/bin/env python3
"""Memory held by request heads that never finish: CONNS connections each send HEAD_BYTES of header lines
(just under the 64 KiB head limit) and stop, as a slow-loris client would. Starts `cache-reserve serve` on
a scratch data directory, prints its RSS before and with every connection held.

    python3 bench/memory/heads.py [BIN] [CONNS] [HEAD_BYTES]   (target/release/cache-reserve 1000 60000)
"""
import os, re, socket, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/cache-reserve"
CONNS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
HEAD_BYTES = int(sys.argv[3]) if len(sys.argv) > 3 else 60000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


with tempfile.TemporaryDirectory() as data:
    log = open(os.path.join(data, "serve.log"), "w")
    server = subprocess.Popen(
        [BIN, "serve", "--data-dir", data, "--api-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:18788"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", 18788), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        before = rss_kib(server.pid)
        line = b"X-Pad: " + b"a" * 90 + b"\r\n"
        head = b"GET / HTTP/1.1\r\nHost: slow.example\r\n" + line * (HEAD_BYTES // len(line))
        held = []
        for _ in range(CONNS):
            s = socket.create_connection(("127.0.0.1", 18788))
            s.sendall(head)
            held.append(s)
        time.sleep(2)
        during = rss_kib(server.pid)
        print(f"connections {CONNS} x {len(head)} head bytes, unfinished: RSS {before // 1024} MiB before, "
              f"{during // 1024} MiB held ({(during - before) / CONNS:.0f} KiB per connection)")
    finally:
        server.terminate()
        server.wait()
