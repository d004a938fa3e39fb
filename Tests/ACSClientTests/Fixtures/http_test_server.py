#!/usr/bin/env python3
"""A small threaded HTTP(S) server for the transport tests. Prints its port, then serves:

  ANY  any other path   200, JSON {"method", "path", "headers", "body_base64"} (an echo)
  GET  /status/<code>   that status, with header x-test: yes
  GET  /delay/<ms>      200 after <ms> milliseconds
  GET  /big/<n>         200 with n octets of body

Usage: http_test_server.py [--cert server.pem --key server.key]
"""
import base64
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def respond(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.strip("/").split("/")
        if parts[0] not in ("status", "delay", "big"):
            document = {"method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body_base64": base64.b64encode(body).decode()}
            self.respond(200, json.dumps(document).encode(), [("Content-Type", "application/json")])
        elif parts[0] == "status":
            self.respond(int(parts[1]), b"status", [("x-test", "yes"), ("Retry-After", "7")])
        elif parts[0] == "delay":
            time.sleep(int(parts[1]) / 1000)
            self.respond(200, b"late")
        elif parts[0] == "big":
            self.respond(200, b"x" * int(parts[1]))

    do_GET = do_POST = do_PUT = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if "--cert" in sys.argv:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[sys.argv.index("--cert") + 1], sys.argv[sys.argv.index("--key") + 1])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
