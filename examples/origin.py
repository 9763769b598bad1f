"""A tiny origin for trying the proxy: serves a directory like `python3 -m http.server`, and marks every
response cacheable for a day, so it qualifies for the reserve (which needs at least 10 hours).

    python3 examples/origin.py [DIRECTORY] [PORT]      # defaults: the current directory, 9000
"""

import functools
import http.server
import sys


class CacheableHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cache-Control", "public, max-age=86400")
        super().end_headers()


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9000
    handler = functools.partial(CacheableHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    print(f"origin: serving {directory} on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
