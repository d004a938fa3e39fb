"""Custody end to end: the spool, the delivery modes, pacing, bounces and the queue commands.

Real gateway, real `acs-email-emulator` over https, real clients that never retry (smtplib). Exactly once is
checked two ways: the emulator records each Operation-Id once, and it counts `replays` — sends of an
Operation-Id it already had — which must stay 0: the gateway asks ACS before it sends again anything whose
earlier attempt may have arrived.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import threading
import time
from pathlib import Path

import pytest

import urllib.request

from e2e_support import Gateway, free_port, gateway_binary

SENDER = "DoNotReply@example.com"


def message(number: int, subject: str = "spool") -> bytes:
    return (f"From: App <app@legacy.example>\r\nTo: Ann <ann@example.net>\r\nSubject: {subject} {number}\r\n"
            f"Message-ID: <spool-{number}@legacy.example>\r\n\r\nMessage {number}.\r\n").encode()


@pytest.fixture
def custody(start_gateway, start_emulator, certificates):
    """Starts an emulator and a gateway delivering to it; returns (gateway, emulator)."""

    def start(*gateway_args: str, emulator_args: tuple[str, ...] = (), emulator=None, check_exit: bool = True):
        emulator = emulator or start_emulator(*emulator_args)
        gateway = start_gateway(
            "--sender-address", SENDER, "--acs-ca-file", str(certificates / "ca.pem"), "--min-backoff", "1s",
            "--max-backoff", "2s", *gateway_args,
            env={"ACS_CONNECTION_STRING": emulator.connection_string}, check_exit=check_exit)
        return gateway, emulator

    return start


def send_many(gateway, count: int, first: int = 0, sender: str = "app@legacy.example",
              recipient: str = "ann@example.net", subject: str = "spool") -> list[tuple[int, str]]:
    """One connection, `count` messages in sequence, no retries: the replies to the end of data."""
    replies = []
    with smtplib.SMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=60) as smtp:
        for number in range(first, first + count):
            smtp.ehlo_or_helo_if_needed()
            code, _ = smtp.mail(sender)
            assert code == 250, code
            assert smtp.rcpt(recipient)[0] == 250
            try:
                code, text = smtp.data(message(number, subject))
            except smtplib.SMTPDataError as error:  # smtplib raises for anything but 250
                code, text = error.smtp_code, error.smtp_error
            replies.append((code, text.decode()))
    return replies


def reply_id(text: str) -> str:
    """The message id a 250 names: `OK <id> queued…` or `OK queued as <id>`."""
    words = text.split()
    return words[words.index("as") + 1] if "as" in words else words[2]


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def recorded_ids(emulator) -> list[str]:
    return [m["operationId"] for m in emulator.messages()]


def replays(emulator) -> int:
    return emulator.admin("GET", "/admin/requests")["send"].get("replays", 0)


def spool_ids(gateway: Gateway) -> set[str]:
    return {p.stem for p in (gateway.spool / "queue").glob("*.eml")} if (gateway.spool / "queue").exists() else set()


def queue_command(gateway: Gateway, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(gateway_binary()), "queue", *args, "--config", "none", "--spool-directory",
                             str(gateway.spool)], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


# --------------------------------------------------------------------------------------------------
# 1. A burst from a client that never retries, under an ACS quota


def test_burst_under_a_quota_is_all_accepted_and_delivered_once_at_the_quota_rate(custody):
    window = 3.0
    admin = f"127.0.0.1:{free_port()}"
    gateway, emulator = custody(
        "--delivery-mode", "hybrid", "--admin-listen", admin,
        emulator_args=("--quota-per-minute", "20", "--quota-minute-seconds", str(window)))
    started = time.monotonic()
    replies = send_many(gateway, 200)
    assert [code for code, _ in replies] == [250] * 200, replies
    ids = [reply_id(text) for _, text in replies]
    assert len(set(ids)) == 200
    assert any("queued for delivery (ACS busy)" in text for _, text in replies)  # custody was taken
    wait_for(lambda: len(emulator.messages()) >= 200, timeout=120, what="200 deliveries")
    elapsed = time.monotonic() - started
    recorded = recorded_ids(emulator)
    # Each exactly once, under the Operation-Id the gateway fixed when it took the message.
    assert sorted(recorded) == sorted(ids)
    assert replays(emulator) == 0
    # 200 at 20 per window need 9 windows after the first; allow a window of slack either way.
    windows = elapsed / window
    assert 8 <= windows <= 14, f"{elapsed:.1f}s for 200 messages at 20 per {window}s"
    # Never more than one probe over the quota per window (plus the first discovery).
    throttled = emulator.count("send", 429)
    assert throttled <= windows + 2, f"{throttled} sends answered 429 in {windows:.1f} windows"
    wait_for(lambda: not spool_ids(gateway), timeout=30, what="an empty spool")
    metrics = urllib.request.urlopen(f"http://{admin}/metrics", timeout=10).read().decode()
    pauses = [line for line in metrics.splitlines() if line.startswith("acsgw_delivery_pacing_pauses_total")]
    assert pauses and float(pauses[0].split()[-1]) >= 1, pauses
    assert 'acsgw_delivery_fates_total{fate="delivered"}' in metrics
    assert 'acsgw_spool_messages{state="queued"} 0' in metrics


# --------------------------------------------------------------------------------------------------
# 2. An ACS outage during a stream


def test_outage_during_a_stream_loses_nothing_and_sends_each_once(custody):
    gateway, emulator = custody("--delivery-mode", "hybrid", "--direct-timeout", "2s")
    before = send_many(gateway, 5, first=0)
    emulator.faults({"route": "any", "outageMs": 30_000})
    outage_started = time.monotonic()
    during = []
    while time.monotonic() - outage_started < 31:
        during += send_many(gateway, 3, first=100 + len(during))
        time.sleep(1)
    after = send_many(gateway, 5, first=1000)
    replies = before + during + after
    assert all(code == 250 for code, _ in replies), [r for r in replies if r[0] != 250]
    assert any("ACS busy" in text for _, text in during)
    ids = [reply_id(text) for _, text in replies]
    wait_for(lambda: len(emulator.messages()) >= len(ids), timeout=60, what="every message delivered")
    assert sorted(recorded_ids(emulator)) == sorted(ids)
    assert replays(emulator) == 0
    wait_for(lambda: not spool_ids(gateway), timeout=30, what="an empty spool")


# --------------------------------------------------------------------------------------------------
# 3. kill -9 while draining a backlog


def test_kill_9_three_times_while_draining_sends_every_message_exactly_once(custody, start_gateway, certificates):
    gateway, emulator = custody("--delivery-mode", "queue", "--max-in-flight", "4", check_exit=False)
    # Slow sends (and a few that stall past the attempt timeout) so kills land mid-attempt.
    emulator.faults({"delayMs": 150})
    replies = send_many(gateway, 100)
    assert [code for code, _ in replies] == [250] * 100
    ids = [reply_id(text) for _, text in replies]
    assert all(text.endswith("queued") for _, text in replies)
    args = gateway.extra_args
    env = {"ACS_CONNECTION_STRING": emulator.connection_string}
    current = gateway
    for kill in range(3):
        wait_for(lambda: len(emulator.messages()) > 0, timeout=20, what="some deliveries")
        time.sleep(0.7)
        current.proc.send_signal(signal.SIGKILL)
        current.proc.wait(10)
        current = start_gateway(*args, "--spool-directory", str(gateway.spool), env=env, check_exit=kill == 2)
    wait_for(lambda: len(emulator.messages()) >= 100, timeout=120, what="100 deliveries")
    assert sorted(recorded_ids(emulator)) == sorted(ids)
    assert replays(emulator) == 0
    wait_for(lambda: not spool_ids(gateway), timeout=30, what="an empty spool")  # the spool every restart uses
    # No record is rewritten before a send: each start asks ACS about every queued message instead.
    assert "ACS is asked about each before it is sent" in "".join(
        p.read_text() for p in gateway.stderr_path.parent.glob("*-stderr.log"))


# --------------------------------------------------------------------------------------------------
# 4. Bounces


def test_refusal_after_custody_bounces_to_the_sender_with_the_reason(custody):
    gateway, emulator = custody("--delivery-mode", "queue")
    emulator.faults({"status": 400, "code": "InvalidEmailAddress", "message": "The recipient is not valid.",
                     "recipient": "bad@*", "count": 1})
    [(code, text)] = send_many(gateway, 1, recipient="bad@example.net", subject="refused")
    assert code == 250
    original = reply_id(text)
    bounce = wait_for(lambda: [m for m in emulator.messages() if m["operationId"] != original], timeout=30,
                      what="the bounce")[0]["request"]
    assert bounce["senderAddress"] == SENDER
    assert bounce["recipients"]["to"][0]["address"] == "app@legacy.example"
    assert "InvalidEmailAddress" in bounce["content"]["plainText"]
    assert "bad@example.net" in bounce["content"]["plainText"]
    names = [a["name"] for a in bounce.get("attachments", [])]
    assert "delivery-status.txt" in names
    wait_for(lambda: not spool_ids(gateway), timeout=30, what="an empty spool")


def test_final_status_failed_bounces_in_every_mode_and_a_null_sender_gets_none(custody):
    gateway, emulator = custody("--delivery-mode", "direct")
    emulator.faults({"finalStatus": "Failed", "code": "EmailDropped", "message": "Dropped.", "count": 1})
    [(code, text)] = send_many(gateway, 1, subject="failed later")
    assert code == 250
    original = reply_id(text)
    bounce = wait_for(lambda: [m for m in emulator.messages() if m["operationId"] != original], timeout=40,
                      what="the bounce")[0]["request"]
    assert bounce["recipients"]["to"][0]["address"] == "app@legacy.example"
    assert "EmailDropped" in bounce["content"]["plainText"]
    # A null sender: the failure is logged, nothing is bounced.
    emulator.faults({"finalStatus": "Failed", "code": "EmailDropped", "count": 1})
    count = len(emulator.messages())
    [(code, _)] = send_many(gateway, 1, sender="", subject="null sender")
    assert code == 250
    wait_for(lambda: "null sender" in gateway.stderr(), timeout=40, what="the no-bounce log line")
    assert len(emulator.messages()) == count + 1  # the message itself, and no bounce


# --------------------------------------------------------------------------------------------------
# 5. Spool limits


def test_a_full_spool_answers_452_before_data_and_loses_nothing(custody):
    gateway, emulator = custody("--delivery-mode", "queue", "--spool-max-messages", "3")
    emulator.faults({"route": "any", "outageMs": 6_000})
    replies = send_many(gateway, 3)
    assert [code for code, _ in replies] == [250] * 3
    with smtplib.SMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=30) as smtp:
        smtp.ehlo()
        code, text = smtp.mail("app@legacy.example")
        assert code == 452 and text.decode().startswith("4.3.1"), (code, text)
    ids = [reply_id(text) for _, text in replies]
    wait_for(lambda: len(emulator.messages()) >= 3, timeout=40, what="the spooled messages")
    assert sorted(recorded_ids(emulator)) == sorted(ids)
    # Room again: MAIL is accepted.
    wait_for(lambda: not spool_ids(gateway), timeout=30, what="an empty spool")
    assert send_many(gateway, 1, first=10)[0][0] == 250
    wait_for(lambda: not spool_ids(gateway), timeout=30, what="an empty spool")


# --------------------------------------------------------------------------------------------------
# 6. Queue commands while the daemon delivers


def test_queue_commands_work_while_the_daemon_delivers(custody):
    gateway, emulator = custody("--delivery-mode", "queue")
    emulator.faults({"route": "any", "outageMs": 15_000})
    replies = send_many(gateway, 4)
    held, deleted, retried, plain = [reply_id(text) for _, text in replies]
    listing = queue_command(gateway, "list").stdout
    assert all(i in listing for i in (held, deleted, retried, plain)), listing
    records = json.loads(queue_command(gateway, "list", "--json").stdout)
    assert {r["id"] for r in records} == {held, deleted, retried, plain}
    assert queue_command(gateway, "hold", held).stdout.strip() == f"held {held}"
    delete = queue_command(gateway, "delete", deleted)
    assert "fate=deleted" in delete.stderr
    assert "Operation-Id" not in queue_command(gateway, "show", retried).stderr
    # After the outage: everything but the held and the deleted message is delivered.
    wait_for(lambda: {retried, plain} <= set(recorded_ids(emulator)), timeout=40, what="deliveries")
    queue_command(gateway, "retry", "--all")
    time.sleep(2)
    assert held not in recorded_ids(emulator) and deleted not in recorded_ids(emulator)
    assert spool_ids(gateway) == {held}
    retry_held = queue_command(gateway, "retry", held, check=False)
    assert retry_held.returncode != 0 and "held" in retry_held.stderr
    queue_command(gateway, "release", held)
    wait_for(lambda: held in recorded_ids(emulator), timeout=20, what="the released message")
    assert deleted not in recorded_ids(emulator)
    assert replays(emulator) == 0


def test_hold_during_an_attempt_waits_for_it_and_then_holds(custody):
    gateway, emulator = custody("--delivery-mode", "queue")
    emulator.faults({"delayMs": 3000, "count": 1})
    [(code, text)] = send_many(gateway, 1)
    first = reply_id(text)
    time.sleep(0.5)  # the attempt is in flight, stalled at the emulator
    started = time.monotonic()
    queue_command(gateway, "hold", first)
    waited = time.monotonic() - started
    # The attempt in flight ended (ACS accepted it); the hold applies to what follows: no resend.
    assert waited > 1.0, waited
    assert recorded_ids(emulator) == [first]
    assert replays(emulator) == 0


def test_direct_mode_keeps_no_state_and_answers_every_outcome(custody):
    gateway, emulator = custody("--delivery-mode", "direct", "--retry-budget", "2s", "--attempt-timeout", "1s")
    emulator.faults({"status": 503, "count": 10})
    [(code, text)] = send_many(gateway, 1)
    assert code == 451 and text.startswith("4.4.0"), text
    assert not gateway.spool.exists()


def test_check_config_names_the_mode_and_the_spool(tmp_path):
    spool = tmp_path / "spool"
    env = {**os.environ, "ACS_CONNECTION_STRING": "endpoint=https://contoso.communication.azure.com/;accesskey="
           + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="}
    result = subprocess.run(
        [str(gateway_binary()), "check-config", "--config", "none", "--delivery-mode", "queue", "--spool-directory",
         str(spool), "--sender-address", SENDER], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    assert "delivery:\n  mode: queue" in result.stdout
    assert f"# mode: queue: every message spooled in {spool} first (not created yet)" in result.stdout
    bad = subprocess.run([str(gateway_binary()), "check-config", "--config", "none", "--bounce", "admin nobody"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 78 and "delivery.bounce" in bad.stderr


def test_sigterm_lets_a_send_in_flight_finish_and_keeps_the_rest_spooled(custody, start_gateway):
    gateway, emulator = custody("--delivery-mode", "queue", "--max-in-flight", "1", check_exit=False)
    emulator.faults({"delayMs": 3000, "count": 1})
    replies = send_many(gateway, 3)
    ids = [reply_id(text) for _, text in replies]
    time.sleep(0.5)  # the first send is in flight, stalled at the emulator; the others wait for the slot
    started = time.monotonic()
    gateway.signal(signal.SIGTERM)
    assert gateway.wait_exit(20) == 0
    assert time.monotonic() - started > 1.5, "the send in flight was cut off"
    assert recorded_ids(emulator) == [ids[0]]  # finished, not abandoned
    assert spool_ids(gateway) >= {ids[1], ids[2]}  # the rest stayed in custody
    # The next start delivers the rest, and follows the first to its final status without sending it again.
    restarted = start_gateway(*gateway.extra_args, "--spool-directory", str(gateway.spool),
                              env={"ACS_CONNECTION_STRING": emulator.connection_string})
    wait_for(lambda: not spool_ids(gateway), timeout=40, what="an empty spool")  # the spool the restart uses
    assert restarted.alive()
    assert sorted(recorded_ids(emulator)) == sorted(ids)
    assert replays(emulator) == 0


def spooled_record(gateway: Gateway, message_id: str) -> dict:
    return json.loads((gateway.spool / "queue" / f"{message_id}.json").read_text())


def test_an_acceptance_is_not_rewritten_and_a_command_that_changes_the_file_makes_the_daemon_ask(custody):
    # ACS accepts at once and says Running at the first status read (5 s later): until then the daemon keeps
    # the acceptance in memory, and the file still says what the intake wrote.
    gateway, emulator = custody("--delivery-mode", "queue", emulator_args=("--polls-until-done", "3"))
    [(code, text)] = send_many(gateway, 1)
    message_id = reply_id(text)
    wait_for(lambda: recorded_ids(emulator) == [message_id], timeout=10, what="the acceptance")
    record = spooled_record(gateway, message_id)
    assert record["state"] == "queued" and record["attempts"] == 0, record
    # A hold rewrites the file under the daemon's feet; the release makes it `queued` again. The daemon must
    # not trust the file's `queued` (a send would repeat the Operation-Id): it asks ACS, finds the operation
    # and follows it to Succeeded.
    assert queue_command(gateway, "hold", message_id).stdout.strip() == f"held {message_id}"
    time.sleep(6)  # past the first status read: the daemon meets the changed file and takes the hold
    assert spool_ids(gateway) == {message_id}
    queue_command(gateway, "release", message_id)
    wait_for(lambda: not spool_ids(gateway), timeout=40, what="the delivery")
    assert recorded_ids(emulator) == [message_id]
    assert replays(emulator) == 0
    assert "ACS already has the operation; not sending it again" in gateway.stderr()


def test_a_stop_writes_the_acceptances_it_kept_in_memory(custody):
    gateway, emulator = custody("--delivery-mode", "queue", emulator_args=("--polls-until-done", "3"),
                                check_exit=False)
    [(code, text)] = send_many(gateway, 1)
    message_id = reply_id(text)
    wait_for(lambda: recorded_ids(emulator) == [message_id], timeout=10, what="the acceptance")
    assert spooled_record(gateway, message_id)["state"] == "queued"
    assert gateway.stop() == 0
    record = spooled_record(gateway, message_id)
    assert record["state"] == "accepted" and record["attempts"] == 1, record
    assert "accepted" in queue_command(gateway, "list").stdout


@pytest.mark.parametrize("policy", ["admin ops@example.com", "none"])
def test_bounce_policy_admin_or_none(custody, policy):
    gateway, emulator = custody("--delivery-mode", "queue", "--bounce", policy)
    emulator.faults({"status": 400, "code": "InvalidEmailAddress", "recipient": "bad@*", "count": 1})
    [(code, text)] = send_many(gateway, 1, recipient="bad@example.net")
    assert code == 250
    original = reply_id(text)
    if policy == "none":
        # Nothing is deleted silently: the message waits in failed/ and the log says why.
        wait_for(lambda: (gateway.spool / "failed" / f"{original}.eml").exists(), timeout=30, what="failed/")
        assert "delivery.bounce is none" in gateway.stderr()
        assert recorded_ids(emulator) == []
        listing = queue_command(gateway, "list").stdout
        assert original in listing and "failed" in listing
        return
    bounce = wait_for(lambda: emulator.messages(), timeout=30, what="the bounce")[0]["request"]
    assert bounce["recipients"]["to"][0]["address"] == "ops@example.com"


def test_a_damaged_record_is_left_alone_and_the_rest_is_delivered(custody, start_gateway, start_emulator):
    emulator = start_emulator()
    emulator.faults({"route": "any", "outageMs": 60_000})
    gateway, _ = custody("--delivery-mode", "queue", emulator=emulator, check_exit=False)
    [(code, text)] = send_many(gateway, 1)
    good = reply_id(text)
    gateway.stop()
    # A record cut short (a disk error, a hand edit): the daemon must still start and deliver the rest.
    damaged = "01a24eff-0000-7000-8000-000000000001"
    (gateway.spool / "queue" / f"{damaged}.eml").write_bytes(message(9))
    (gateway.spool / "queue" / f"{damaged}.json").write_text('{"id": "' + damaged + '", "state": "queu')
    emulator.admin("POST", "/admin/reset")
    restarted = start_gateway(*gateway.extra_args, "--spool-directory", str(gateway.spool),
                              env={"ACS_CONNECTION_STRING": emulator.connection_string})
    wait_for(lambda: good in recorded_ids(emulator), timeout=30, what="the intact message")
    assert "cannot read a spooled message; leaving it where it is" in restarted.stderr()
    assert (gateway.spool / "queue" / f"{damaged}.json").exists()
    assert replays(emulator) == 0
