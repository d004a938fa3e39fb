"""The official Python SDK (`azure-communication-email`) against the real `acs-email-emulator` binary.

This proves the emulator speaks the real protocol: the SDK's connection-string flow (which always uses
https), its HMAC signing, its long-running-operation polling and its retry policy. The emulator runs with
TLS and a throwaway CA made with the openssl CLI; the SDK trusts it through `connection_verify`.

The binary is `$EMULATOR_BIN`, by default `<repo>/.build/debug/acs-email-emulator`. The SDK is installed
by `.ci/install-packages test`; without it the module is skipped.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request
import ssl
from pathlib import Path

import pytest

email = pytest.importorskip(
    "azure.communication.email",
    reason="azure-communication-email is not installed (python3 -m pip install azure-communication-email)",
)
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / ".build" / "debug" / "acs-email-emulator"
KEY = base64.b64encode(bytes(range(64))).decode()
START_TIMEOUT = 10.0
EXIT_TIMEOUT = 5.0

MESSAGE = {
    "senderAddress": "DoNotReply@contoso.com",
    "recipients": {"to": [{"address": "jane@example.com", "displayName": "Jane"}],
                   "bcc": [{"address": "audit@example.com"}]},
    "content": {"subject": "Grüße from the SDK", "plainText": "Hello, émulator", "html": "<p>Hello</p>"},
    "attachments": [{"name": "a.txt", "contentType": "text/plain",
                     "contentInBase64": base64.b64encode(b"attached").decode()}],
}


def emulator_binary() -> Path:
    return Path(os.environ.get("EMULATOR_BIN", str(DEFAULT_BIN)))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    script = """
        set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
          -days 2 -subj /CN=acs-emulator-e2e-ca -addext basicConstraints=critical,CA:TRUE \
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
            pytest.fail(f"emulator binary {binary} not found: run `swift build` first or set EMULATOR_BIN",
                        pytrace=False)
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

    def client(self, key: str = KEY) -> "email.EmailClient":
        return email.EmailClient.from_connection_string(
            f"endpoint={self.endpoint};accesskey={key}", connection_verify=str(self.ca))

    def admin(self, method: str, path: str, body=None):
        context = ssl.create_default_context(cafile=str(self.ca))
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint}{path.lstrip('/')}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            text = response.read()
            return json.loads(text) if text else None

    def messages(self) -> list:
        return self.admin("GET", "/admin/messages")

    def count(self, route: str, status: int) -> int:
        return self.admin("GET", "/admin/requests")[route]["statuses"].get(str(status), 0)

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


@pytest.fixture
def start_emulator(tmp_path, certificates):
    started = []

    def start(*args: str) -> Emulator:
        emulator = Emulator(tmp_path, certificates, *args)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        status = emulator.stop()
        assert status == 0, f"the emulator did not exit 0 after SIGTERM ({status}):\n{emulator.stderr_path.read_text()}"


def test_sdk_sends_through_the_connection_string_flow_and_polls_to_succeeded(start_emulator):
    emulator = start_emulator()
    poller = emulator.client().begin_send(MESSAGE)
    result = poller.result(timeout=30)
    assert result["status"] == "Succeeded"
    assert result["error"] is None

    messages = emulator.messages()
    assert len(messages) == 1
    assert messages[0]["operationId"] == result["id"]
    assert messages[0]["apiVersion"] == "2025-09-01"
    assert messages[0]["request"] == MESSAGE
    # The --record file holds the same message as one JSON line.
    lines = emulator.record.read_text().splitlines()
    assert [json.loads(line)["request"] for line in lines] == [MESSAGE]
    assert emulator.count("send", 202) == 1
    assert emulator.count("poll", 200) == 1


def test_sdk_polls_until_the_operation_finishes(start_emulator):
    emulator = start_emulator("--polls-until-done", "3", "--retry-after", "1")
    result = emulator.client().begin_send(MESSAGE).result(timeout=30)
    assert result["status"] == "Succeeded"
    # Two polls see Running (with retry-after), the third Succeeded.
    assert emulator.count("poll", 200) == 3


def test_sdk_operation_id_is_idempotent(start_emulator):
    emulator = start_emulator()
    client = emulator.client()
    first = client.begin_send(MESSAGE, operation_id="0b5e2b0a-4f7f-4a57-9b36-54c1e6b1c001").result(timeout=30)
    second = client.begin_send(MESSAGE, operation_id="0b5e2b0a-4f7f-4a57-9b36-54c1e6b1c001").result(timeout=30)
    assert first["id"] == second["id"] == "0b5e2b0a-4f7f-4a57-9b36-54c1e6b1c001"
    assert len(emulator.messages()) == 1
    assert emulator.count("send", 202) == 2


def test_sdk_with_the_wrong_key_gets_401(start_emulator):
    emulator = start_emulator()
    wrong = base64.b64encode(bytes(64)).decode()
    with pytest.raises(ClientAuthenticationError) as raised:
        emulator.client(wrong).begin_send(MESSAGE)
    assert raised.value.status_code == 401
    assert raised.value.error.code == "Denied"
    assert emulator.messages() == []


def test_sdk_retries_a_429_with_retry_after_then_succeeds(start_emulator):
    emulator = start_emulator()
    emulator.admin("POST", "/admin/faults", [{"status": 429, "retryAfter": 1, "count": 1}])
    started = time.monotonic()
    result = emulator.client().begin_send(MESSAGE).result(timeout=30)
    assert result["status"] == "Succeeded"
    assert time.monotonic() - started >= 1.0
    assert emulator.count("send", 429) == 1
    assert emulator.count("send", 202) == 1
    assert len(emulator.messages()) == 1


def test_sdk_reports_a_failed_final_status(start_emulator):
    emulator = start_emulator()
    emulator.admin("POST", "/admin/faults", [{
        "finalStatus": "Failed", "code": "EmailDroppedAllRecipientsSuppressed",
        "message": "Message dropped because all recipients were suppressed", "count": 1}])
    with pytest.raises(HttpResponseError) as raised:
        emulator.client().begin_send(MESSAGE).result(timeout=30)
    assert "EmailDroppedAllRecipientsSuppressed" in str(raised.value)


def test_sdk_sees_validation_errors_with_the_acs_error_code(start_emulator):
    emulator = start_emulator("--sender-domain", "contoso.com")
    bad = dict(MESSAGE, senderAddress="DoNotReply@fabrikam.com")
    with pytest.raises(HttpResponseError) as raised:
        emulator.client().begin_send(bad)
    assert raised.value.status_code == 404
    assert raised.value.error.code == "DomainNotLinked"
    assert emulator.messages() == []
