#!/usr/bin/env python3
"""A fake Entra ID token endpoint and IMDS for the token-credential tests (loopback only).
Prints its port, then serves:

  POST /<tenant>/oauth2/v2.0/token      the client-credentials grant (acs-email-api.md section 4.2):
                                        200 {"token_type","expires_in","access_token":"token-<n>"} when the
                                        form is right, 401 invalid_client for a wrong secret, 400 otherwise
  GET  /metadata/identity/oauth2/token  IMDS (section 4.3): needs "Metadata: true"; numbers as strings
  POST /admin/config                    JSON {"expires_in": s, "fail": [status, ...], "delay_ms": ms}:
                                        the next requests answer the listed statuses in turn
  GET  /admin/stats                     {"token_requests": n, "imds_requests": n, "forms": [...], "paths": [...]}

Usage: fake_token_server.py --secret SECRET [--cert server.pem --key server.key]
"""
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SCOPE = "https://communication.azure.com//.default"
state = {"expires_in": 3600, "fail": [], "delay_ms": 0, "issued": 0,
         "token_requests": 0, "imds_requests": 0, "forms": [], "paths": []}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    secret = ""

    def log_message(self, *args):
        pass

    def respond(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def next_failure(self):
        """Counts the request, then returns a scripted failure status or None, after the scripted delay."""
        with lock:
            failure = state["fail"].pop(0) if state["fail"] else None
            delay = state["delay_ms"]
            state["issued"] += 1 if failure is None else 0
            number = state["issued"]
            expires_in = state["expires_in"]
        time.sleep(delay / 1000)
        return failure, number, expires_in

    def do_POST(self):
        path = urlsplit(self.path).path
        body = self.read_body()
        if path == "/admin/config":
            config = json.loads(body or b"{}")
            with lock:
                for key in ("expires_in", "fail", "delay_ms"):
                    if key in config:
                        state[key] = config[key]
            return self.respond(200, {"ok": True})
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            return self.respond(404, {"error": "not_found"})
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with lock:
            state["token_requests"] += 1
            state["forms"].append({k: v for k, v in form.items() if k != "client_secret"})
            state["paths"].append(self.path)
        failure, number, expires_in = self.next_failure()
        if failure is not None:
            return self.respond(failure, {"error": "temporarily_unavailable", "error_description": "scripted"})
        if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
            return self.respond(400, {"error": "invalid_request", "error_description": "not a form"})
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return self.respond(400, {"error": "invalid_scope", "error_description": "AADSTS70011: bad scope"})
        if form.get("client_secret") != Handler.secret:
            # Echoes what it was sent, as a careless proxy might: the client must not log it.
            return self.respond(401, {"error": "invalid_client",
                                      "error_description": "AADSTS7000215: Invalid client secret provided: "
                                      + str(form.get("client_secret"))})
        self.respond(200, {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
                           "access_token": "token-%d" % number})

    def do_GET(self):
        split = urlsplit(self.path)
        if split.path == "/admin/stats":
            with lock:
                return self.respond(200, {k: state[k] for k in ("token_requests", "imds_requests", "forms", "paths")})
        if split.path != "/metadata/identity/oauth2/token":
            return self.respond(404, {"error": "not_found"})
        with lock:
            state["imds_requests"] += 1
            state["paths"].append(self.path)
        if self.headers.get("Metadata") != "true":
            return self.respond(400, {"error": "invalid_request",
                                      "error_description": "Required metadata header not specified"})
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        if query.get("api-version") != "2018-02-01" or query.get("resource") != "https://communication.azure.com/":
            return self.respond(400, {"error": "invalid_request", "error_description": "bad query"})
        failure, number, expires_in = self.next_failure()
        if failure is not None:
            return self.respond(failure, {"error": "unavailable"})
        expires_on = int(time.time()) + expires_in
        self.respond(200, {"access_token": "mi-token-%d" % number, "client_id": query.get("client_id", "system"),
                           "expires_in": str(expires_in), "expires_on": str(expires_on),
                           "ext_expires_in": str(expires_in), "not_before": str(expires_on - expires_in),
                           "resource": query["resource"], "token_type": "Bearer"})


def main():
    Handler.secret = sys.argv[sys.argv.index("--secret") + 1]
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
