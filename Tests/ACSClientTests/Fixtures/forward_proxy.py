#!/usr/bin/env python3
"""A minimal forward HTTP proxy for the transport tests: relays absolute-URI requests and answers with the
origin's response plus `x-via-test-proxy: yes`. Prints its port, then serves (loopback only)."""
import http.client
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        target = urllib.parse.urlsplit(self.path)
        if target.hostname not in ("127.0.0.1", "localhost"):
            self.send_error(403, "this test proxy only relays to loopback")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        origin = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        path = target.path + ("?" + target.query if target.query else "")
        origin.request(self.command, path, body=body, headers=headers)
        response = origin.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("x-via-test-proxy", "yes")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = relay


server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
