"""ACS delivery end to end: smtplib → the real gateway → the real `acs-email-emulator` over https with a test CA.

For each fault the emulator is told to inject, the tests assert the SMTP reply (code and enhanced code),
how many requests the emulator saw, and that it recorded exactly one message when the client got 250 and
none when it got 4xx/5xx.
"""

from __future__ import annotations

import smtplib
import time

import pytest

SENDER = "DoNotReply@example.com"
MESSAGE = (b"From: App <app@legacy.example>\r\nTo: Ann <ann@example.net>\r\nSubject: ACS e2e\r\n"
           b"Message-ID: <e2e-1@legacy.example>\r\n\r\nHello through ACS.\r\n")


@pytest.fixture
def deliver(start_gateway, start_emulator, certificates):
    """Starts an emulator and a gateway delivering to it; returns (gateway, emulator)."""

    def start(*gateway_args: str, emulator_args: tuple[str, ...] = ()):
        emulator = start_emulator(*emulator_args)
        gateway = start_gateway(
            "--sender-address", SENDER, "--acs-ca-file", str(certificates / "ca.pem"), *gateway_args,
            env={"ACS_CONNECTION_STRING": emulator.connection_string})
        return gateway, emulator

    return start


def send(gateway, message: bytes = MESSAGE, recipients=("ann@example.net",)):
    """Sends one message; returns (code, text) of the reply to the end of data."""
    with smtplib.SMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=120) as smtp:
        smtp.ehlo()
        code, text = smtp.mail("app@legacy.example")
        assert code == 250
        for recipient in recipients:
            assert smtp.rcpt(recipient)[0] == 250
        code, text = smtp.data(message)
        return code, text.decode()


def test_accepted_message_is_sent_once_and_the_reply_names_the_operation(deliver):
    gateway, emulator = deliver()
    code, text = send(gateway, recipients=("ann@example.net", "hidden@example.org"))
    assert code == 250
    assert text.startswith("2.0.0 OK queued as ")
    operation_id = text.rsplit(" ", 1)[1]
    [recorded] = emulator.messages()
    assert recorded["operationId"] == operation_id
    request = recorded["request"]
    assert request["senderAddress"] == SENDER
    assert request["replyTo"] == [{"address": "app@legacy.example", "displayName": "App"}]
    assert request["recipients"] == {"to": [{"address": "ann@example.net", "displayName": "Ann"}],
                                     "bcc": [{"address": "hidden@example.org"}]}
    assert request["headers"] == {"Message-ID": "<e2e-1@legacy.example>"}
    assert emulator.count("send") == 1
    # The outbox copy holds exactly the request that was sent.
    [copy] = gateway.wait_for_messages(1)
    assert copy.id == operation_id
    assert copy.record["acsRequest"] == request


def test_429_with_retry_after_then_success(deliver):
    gateway, emulator = deliver()
    emulator.faults({"status": 429, "retryAfter": 1, "count": 1})
    started = time.monotonic()
    code, text = send(gateway)
    assert code == 250 and text.startswith("2.0.0 ")
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert emulator.count("send", 429) == 1
    assert emulator.count("send", 202) == 1
    assert len(emulator.messages()) == 1


def test_429_beyond_the_retry_budget_is_451_4_7_1(deliver):
    gateway, emulator = deliver("--retry-budget", "3", "--attempt-timeout", "2")
    emulator.faults({"status": 429, "retryAfter": 1})
    code, text = send(gateway)
    assert code == 451
    assert text.startswith("4.7.1 Throttled by ACS, retry in 1 s")
    assert emulator.count("send", 429) >= 2
    assert emulator.count("send", 202) == 0
    assert emulator.messages() == []


def test_503_twice_then_success(deliver):
    gateway, emulator = deliver()
    emulator.faults({"status": 503, "count": 2})
    code, _ = send(gateway)
    assert code == 250
    assert emulator.count("send", 503) == 2
    assert emulator.count("send", 202) == 1
    assert emulator.count("send") == 3
    assert len(emulator.messages()) == 1


def test_500_forever_is_451_4_4_0(deliver):
    gateway, emulator = deliver("--retry-budget", "4", "--attempt-timeout", "2")
    emulator.faults({"status": 500})
    code, text = send(gateway)
    assert code == 451
    assert text.startswith("4.4.0 ")
    assert emulator.count("send", 500) >= 2
    assert emulator.messages() == []


def test_invalid_sender_user_name_is_553_5_1_7(deliver):
    gateway, emulator = deliver()
    emulator.faults({"status": 400, "code": "InvalidSenderUserName", "message": "Invalid email sender username."})
    code, text = send(gateway)
    assert code == 553
    assert text.startswith("5.1.7 ") and "InvalidSenderUserName" in text
    assert emulator.count("send") == 1  # permanent: not retried
    assert emulator.messages() == []


def test_401_is_451_4_7_0_and_the_log_names_a_likely_cause(deliver):
    gateway, emulator = deliver()
    emulator.faults({"status": 401})
    code, text = send(gateway)
    assert code == 451
    assert text.startswith("4.7.0 ")
    assert emulator.count("send") == 1
    assert emulator.messages() == []
    assert "likely_cause=" in gateway.stderr()


def test_wrong_access_key_is_a_real_401(start_gateway, start_emulator, certificates):
    emulator = start_emulator()
    wrong = emulator.connection_string.rsplit("accesskey=", 1)[0] + "accesskey=" + "A" * 86 + "=="
    gateway = start_gateway("--sender-address", SENDER, "--acs-ca-file", str(certificates / "ca.pem"),
                            env={"ACS_CONNECTION_STRING": wrong})
    code, text = send(gateway)
    assert code == 451 and text.startswith("4.7.0 ")
    assert emulator.count("send", 401) == 1
    assert emulator.messages() == []
    assert "A" * 86 not in gateway.stderr()  # the key is never logged


def test_a_30_second_stall_is_abandoned_and_retried_without_a_second_message(deliver):
    gateway, emulator = deliver("--attempt-timeout", "5", "--retry-budget", "40")
    emulator.faults({"delayMs": 30000, "count": 1})
    started = time.monotonic()
    code, text = send(gateway)
    elapsed = time.monotonic() - started
    assert code == 250, text
    assert elapsed < 20  # the stalled attempt was abandoned after 5 s, not waited out
    assert emulator.count("send", 202) == 1
    # The stalled request finally completes inside the emulator at ~30 s: same Operation-Id, same body.
    deadline = time.monotonic() + 40
    while emulator.count("send", 202) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert emulator.count("send", 202) == 2
    assert len(emulator.messages()) == 1


def test_poll_result_failed_with_reply_after_final_is_550_5_1_0(deliver):
    gateway, emulator = deliver("--reply-after", "final")
    emulator.faults({"finalStatus": "Failed", "code": "EmailDroppedAllRecipientsSuppressed",
                     "message": "Message dropped because all recipients were suppressed", "count": 1})
    code, text = send(gateway)
    assert code == 550
    assert text.startswith("5.1.0 ") and "EmailDroppedAllRecipientsSuppressed" in text
    assert emulator.count("poll", 200) >= 1
    # ACS accepted the request (so the emulator recorded it) but dropped it: the operation ended Failed,
    # which is what the client was told and what the gateway logged.
    assert len(emulator.messages()) == 1
    assert "acs.status=Failed" in gateway.stderr()


def test_reply_after_final_succeeded_is_250(deliver):
    gateway, emulator = deliver("--reply-after", "final")
    code, text = send(gateway)
    assert code == 250
    assert emulator.count("poll", 200) >= 1
    assert len(emulator.messages()) == 1


def test_final_status_is_logged_in_the_background_with_reply_after_accepted(deliver):
    gateway, emulator = deliver()
    code, _ = send(gateway)
    assert code == 250
    deadline = time.monotonic() + 10
    while "ACS final status" not in gateway.stderr() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "acs.status=Succeeded" in gateway.stderr()


def test_a_recipient_acs_cannot_take_is_refused_at_rcpt_and_the_rest_delivered(deliver):
    # ACS refuses a whole message with 400 InvalidEmailAddress for one such recipient; refused at RCPT
    # (553 5.1.3), it costs only that recipient, and the client delivers to the others.
    gateway, emulator = deliver()
    with smtplib.SMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=60) as smtp:
        smtp.ehlo()
        assert smtp.mail("app@legacy.example")[0] == 250
        for refused in ('"john doe"@example.net', "ops@[192.0.2.1]", "root@intranet"):
            code, text = smtp.rcpt(refused)
            assert (code, text.decode().split(" ")[0]) == (553, "5.1.3"), (refused, code, text)
        # A local recipient without an alias says how to give it one (test_sendmail.py has the aliases).
        code, text = smtp.rcpt("root@localhost")
        assert (code, text.decode().split(" ")[0]) == (550, "5.1.1") and b"under aliases:" in text
        assert smtp.rcpt("ann@example.net")[0] == 250
        code, text = smtp.data(MESSAGE)
        assert code == 250, text
    [recorded] = emulator.messages()
    assert recorded["request"]["recipients"]["to"] == [{"address": "ann@example.net", "displayName": "Ann"}]
    assert "bcc" not in recorded["request"]["recipients"] or recorded["request"]["recipients"]["bcc"] == []


def test_postmaster_with_acs_goes_to_the_postmaster_address_and_without_one_is_refused_alone(deliver):
    # RFC 5321 §4.5.1: <postmaster> MUST be accepted. ACS has no such address, so it goes to
    # senders.postmaster_address; only without one is it refused (550 5.1.1), for that recipient alone.
    gateway, emulator = deliver("--postmaster-address", "hostmaster@example.net")
    code, _ = send(gateway, recipients=("postmaster", "ann@example.net"))
    assert code == 250
    [recorded] = emulator.messages()
    assert recorded["request"]["recipients"]["bcc"] == [{"address": "hostmaster@example.net"}]

    bare, bare_emulator = deliver()
    with smtplib.SMTP(bare.host, bare.port, local_hostname="client.example", timeout=60) as smtp:
        smtp.ehlo()
        assert smtp.mail("app@legacy.example")[0] == 250
        code, text = smtp.rcpt("postmaster")
        assert (code, text.decode().split(" ")[0]) == (550, "5.1.1")
        assert smtp.rcpt("ann@example.net")[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
    assert len(bare_emulator.messages()) == 1


def test_without_acs_such_recipients_are_kept_in_the_outbox(gateway):
    with smtplib.SMTP(gateway.host, gateway.port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("app@legacy.example")
        assert smtp.rcpt('"john doe"@example.net')[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
    gateway.wait_for_messages(1)
