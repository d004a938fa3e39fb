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
import time

import pytest

email = pytest.importorskip(
    "azure.communication.email",
    reason="azure-communication-email is not installed (python3 -m pip install azure-communication-email)",
)
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError  # noqa: E402

from acs_support import KEY  # noqa: E402

MESSAGE = {
    "senderAddress": "DoNotReply@contoso.com",
    "recipients": {"to": [{"address": "jane@example.com", "displayName": "Jane"}],
                   "bcc": [{"address": "audit@example.com"}]},
    "content": {"subject": "Grüße from the SDK", "plainText": "Hello, émulator", "html": "<p>Hello</p>"},
    "attachments": [{"name": "a.txt", "contentType": "text/plain",
                     "contentInBase64": base64.b64encode(b"attached").decode()}],
}


def client(emulator, key: str = KEY) -> "email.EmailClient":
    """The SDK's own connection-string flow (always https), trusting the test CA."""
    return email.EmailClient.from_connection_string(
        f"endpoint={emulator.endpoint};accesskey={key}", connection_verify=str(emulator.ca))


def test_sdk_sends_through_the_connection_string_flow_and_polls_to_succeeded(start_emulator):
    emulator = start_emulator()
    poller = client(emulator).begin_send(MESSAGE)
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
    result = client(emulator).begin_send(MESSAGE).result(timeout=30)
    assert result["status"] == "Succeeded"
    # Two polls see Running (with retry-after), the third Succeeded.
    assert emulator.count("poll", 200) == 3


def test_sdk_operation_id_is_idempotent(start_emulator):
    emulator = start_emulator()
    sdk = client(emulator)
    first = sdk.begin_send(MESSAGE, operation_id="0b5e2b0a-4f7f-4a57-9b36-54c1e6b1c001").result(timeout=30)
    second = sdk.begin_send(MESSAGE, operation_id="0b5e2b0a-4f7f-4a57-9b36-54c1e6b1c001").result(timeout=30)
    assert first["id"] == second["id"] == "0b5e2b0a-4f7f-4a57-9b36-54c1e6b1c001"
    assert len(emulator.messages()) == 1
    assert emulator.count("send", 202) == 2


def test_sdk_with_the_wrong_key_gets_401(start_emulator):
    emulator = start_emulator()
    wrong = base64.b64encode(bytes(64)).decode()
    with pytest.raises(ClientAuthenticationError) as raised:
        client(emulator, wrong).begin_send(MESSAGE)
    assert raised.value.status_code == 401
    assert raised.value.error.code == "Denied"
    assert emulator.messages() == []


def test_sdk_retries_a_429_with_retry_after_then_succeeds(start_emulator):
    emulator = start_emulator()
    emulator.admin("POST", "/admin/faults", [{"status": 429, "retryAfter": 1, "count": 1}])
    started = time.monotonic()
    result = client(emulator).begin_send(MESSAGE).result(timeout=30)
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
        client(emulator).begin_send(MESSAGE).result(timeout=30)
    assert "EmailDroppedAllRecipientsSuppressed" in str(raised.value)


def test_sdk_sees_validation_errors_with_the_acs_error_code(start_emulator):
    emulator = start_emulator("--sender-domain", "contoso.com")
    bad = dict(MESSAGE, senderAddress="DoNotReply@fabrikam.com")
    with pytest.raises(HttpResponseError) as raised:
        client(emulator).begin_send(bad)
    assert raised.value.status_code == 404
    assert raised.value.error.code == "DomainNotLinked"
    assert emulator.messages() == []
