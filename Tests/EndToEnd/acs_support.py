"""Helpers for the ACS end-to-end tests: a throw-away CA and a running `acs-email-emulator`.

The emulator binary is `$EMULATOR_BIN`, by default `<repo>/.build/debug/acs-email-emulator`. It runs with
TLS (a test CA made with the openssl CLI) on a port it picks itself, and is stopped with SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_EMULATOR_BIN = REPO / ".build" / "debug" / "acs-email-emulator"
KEY = base64.b64encode(bytes(range(64))).decode()
START_TIMEOUT = 10.0
EXIT_TIMEOUT = 5.0


def emulator_binary() -> Path:
    return Path(os.environ.get("EMULATOR_BIN", str(DEFAULT_EMULATOR_BIN)))


def make_certificates(directory: Path) -> Path:
    """A CA (`ca.pem`) and a server certificate for 127.0.0.1/localhost (`server.pem`, `server.key`)."""
    script = """
        set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
          -days 2 -subj /CN=acs-e2e-test-ca -addext basicConstraints=critical,CA:TRUE \
          -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
          -subj /CN=localhost
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
          -extfile ext.cnf
    """
    subprocess.run(["bash", "-c", script], cwd=directory, check=True, capture_output=True)
    return directory


class Emulator:
    """A running `acs-email-emulator` with TLS on a port it picked itself (`--listen 127.0.0.1:0`)."""

    def __init__(self, directory: Path, certificates: Path, *args: str):
        binary = emulator_binary()
        if not binary.is_file():
            raise RuntimeError(f"emulator binary {binary} not found: run `swift build` first or set EMULATOR_BIN")
        directory.mkdir(parents=True, exist_ok=True)
        self.record = directory / "record.jsonl"
        self.stderr_path = directory / "emulator.stderr"
        self.ca = certificates / "ca.pem"
        command = [str(binary), "--listen", "127.0.0.1:0", "--access-key", KEY,
                   "--tls-cert", str(certificates / "server.pem"), "--tls-key", str(certificates / "server.key"),
                   "--record", str(self.record), *args]
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.stderr_file)
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if "listening on" in line:
                return int(line.strip().rsplit(":", 1)[1])
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"the emulator did not start:\n{self.stderr_path.read_text()}")

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def connection_string(self) -> str:
        return f"endpoint=https://127.0.0.1:{self.port};accesskey={KEY}"

    def admin(self, method: str, path: str, body=None):
        context = ssl.create_default_context(cafile=str(self.ca))
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint}{path.lstrip('/')}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            text = response.read()
            return json.loads(text) if text else None

    def faults(self, *faults: dict) -> None:
        self.admin("POST", "/admin/faults", list(faults))

    def messages(self) -> list:
        return self.admin("GET", "/admin/messages")

    def count(self, route: str, status: int | None = None) -> int:
        counts = self.admin("GET", "/admin/requests")[route]
        return counts["total"] if status is None else counts["statuses"].get(str(status), 0)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -1
        self.stderr_file.close()
        return self.proc.returncode
