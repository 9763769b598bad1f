"""The two ends of bench/memory/misses.sh.

    python3 load.py origin PORT_FILE SIZE
        An origin serving /obj/N for any N: SIZE bytes starting with "object N;", with Content-Length and
        Cache-Control: public, max-age=86400. Every body shares one buffer, so the origin stays small. It
        binds port 0 and writes the port to PORT_FILE.

    python3 load.py clients PROXY_PORT HOST CLIENTS HOLD RATE PROXY_PID
        CLIENTS concurrent GETs of distinct objects (/obj/0 ...), each a slow reader: a small receive buffer,
        RATE bytes/s, until HOLD bytes are left; there every client waits until all have got that far (so
        every miss is in flight at once), the proxy's RSS is sampled, and then they read the rest. Checks
        every body's length and first bytes; prints one JSON line.
"""

import http.server
import json
import os
import socket
import sys
import threading
import time

CHUNK = 64 * 1024


def origin(port_file, size):
    filler = bytes(size)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            prefix = f"object {self.path.rsplit('/', 1)[-1]};".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "public, max-age=86400")
            self.end_headers()
            self.wfile.write(prefix)
            view = memoryview(filler)[len(prefix):]
            for start in range(0, len(view), 1 << 20):
                self.wfile.write(view[start:start + (1 << 20)])

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 1024
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def clients(proxy_port, host, n, hold, rate, pid):
    at_hold = {}

    def sample():
        at_hold["rss_kib"] = rss_kib(pid, "VmRSS")

    barrier = threading.Barrier(n, action=sample)
    results = [None] * n

    def one(i):
        try:
            s = socket.socket()
            # A small receive buffer: the kernel cannot absorb what the client has not read.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.connect(("127.0.0.1", proxy_port))
            s.sendall(f"GET /obj/{i} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            f = s.makefile("rb", buffering=0)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                b = f.read(1)
                if not b:
                    raise RuntimeError("connection closed in the head")
                head += b
            lines = head.decode().split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            length = int(headers["content-length"])
            first, got, started = b"", 0, time.monotonic()
            waited = False
            while got < length:
                if not waited and length - got <= hold:
                    barrier.wait(timeout=300)
                    waited = True
                want = CHUNK if waited else min(CHUNK, length - got - hold)
                data = f.read(want)
                if not data:
                    break
                if len(first) < 32:
                    first += data[:32]
                got += len(data)
                if not waited:
                    # Paced: at most RATE bytes/s.
                    ahead = got / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            s.close()
            ok = status == 200 and got == length and first.startswith(f"object {i};".encode())
            results[i] = {"ok": ok, "status": headers.get("cf-cache-status", "?")}
        except Exception as e:  # noqa: BLE001 - reported, not raised
            results[i] = {"ok": False, "error": repr(e)}
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r.get("error") for r in results if r and r.get("error")]
    print(json.dumps({
        "clients": n,
        "whole": sum(1 for r in results if r and r["ok"]),
        "miss": sum(1 for r in results if r and r.get("status") == "MISS"),
        "rss_at_hold_kib": at_hold.get("rss_kib"),
        "seconds": round(time.monotonic() - start, 1),
        "errors": errors[:3],
    }))


def main():
    if sys.argv[1] == "origin":
        origin(sys.argv[2], int(sys.argv[3]))
    else:
        port, host, n, hold, rate, pid = sys.argv[2:8]
        clients(int(port), host, int(n), int(hold), float(rate), int(pid))


if __name__ == "__main__":
    main()
