"""SIGTERM while an ACS call is in flight: the real gateway delivering to the real emulator over https.

The emulator is told to stall the send (`delayMs`); once it holds the request, the gateway gets SIGTERM.
What must happen (README "Running it", Serve.swift): the listener closes at once, the session whose
message is at ACS gets ACS's real answer (not a 421 that would make its client send the message again),
and the process exits 0. In ACS mode the daemon raises `--shutdown-grace` to cover one whole ACS call
(retry budget + poll deadline + 15 s), so a stalled ACS call ends inside the drain: the only sessions a
shutdown deadline can still cut off with `421 4.3.2` are clients that are in a transaction but not
delivering (here: one that stopped after RCPT).

The emulator counts a request in `/admin/requests` only once it has answered it, so "the emulator holds
the request" is seen on `/admin/faults` instead: a stall fault with `count: 1` is used up (and listed no
more) the moment the request reaches it, before the stall.
"""

from __future__ import annotations

import re
import signal
import smtplib
import threading
import time
from pathlib import Path

import pytest

from e2e_support import check

SENDER = "DoNotReply@example.com"
MESSAGE = (b"From: App <app@legacy.example>\r\nTo: Ann <ann@example.net>\r\nSubject: shutdown e2e\r\n"
           b"Message-ID: <shutdown-1@legacy.example>\r\n\r\nSent while the gateway stops.\r\n")


class SMTPClientThread(threading.Thread):
    """smtplib in a thread: one message, then QUIT. Records the reply to the data and what QUIT got."""

    def __init__(self, host: str, port: int):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.data_reply: tuple[int, str] | None = None
        self.data_replied_at: float | None = None
        self.after: str | None = None  # what followed the reply to the data
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname="client.example", timeout=60)
            try:
                smtp.ehlo()
                assert smtp.mail("app@legacy.example")[0] == 250
                assert smtp.rcpt("ann@example.net")[0] == 250
                code, text = smtp.data(MESSAGE)
                self.data_replied_at = time.monotonic()
                self.data_reply = (code, text.decode())
                try:
                    code, text = smtp.docmd("QUIT")
                    self.after = f"{code} {text.decode()}"
                except smtplib.SMTPServerDisconnected:
                    self.after = "disconnected"
            finally:
                smtp.close()
        except BaseException as error:  # reported by the test
            self.error = error


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def is_listening(port: int) -> bool:
    """Whether anything listens on 127.0.0.1:`port` (state 0A in /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":
            return True
    return False


def log_lines(gateway) -> list[str]:
    return gateway.stderr().splitlines()


def index_of(lines: list[str], pattern: str) -> int:
    for index, line in enumerate(lines):
        if re.search(pattern, line):
            return index
    raise AssertionError(f"no log line matches {pattern!r}:\n" + "\n".join(lines))


@pytest.fixture
def deliver(start_gateway, start_emulator, certificates):
    def start(*gateway_args: str):
        emulator = start_emulator()
        gateway = start_gateway(
            "--sender-address", SENDER, "--acs-ca-file", str(certificates / "ca.pem"), *gateway_args,
            check_exit=False, env={"ACS_CONNECTION_STRING": emulator.connection_string})
        return gateway, emulator

    return start


def start_stalled_send(gateway, emulator, delay_ms: int) -> SMTPClientThread:
    """Stalls the next send for `delay_ms`, starts a client, and returns once the emulator holds its request."""
    emulator.faults({"delayMs": delay_ms, "count": 1})
    client = SMTPClientThread(gateway.host, gateway.port)
    client.start()
    wait_until(lambda: emulator.admin("GET", "/admin/faults") == [] or client.data_reply or client.error,
               10, "the emulator to receive the send")
    assert client.error is None and client.data_reply is None, (client.error, client.data_reply)
    assert emulator.count("send") == 0  # received, not answered yet
    return client


def test_sigterm_while_acs_is_answering_gives_the_real_reply_and_exits_0(deliver):
    # --shutdown-grace 1 is less than the 3 s stall: the daemon raises it in ACS mode (to 60 + 0 + 15 s with
    # the default retry budget), so the reply still comes from ACS.
    gateway, emulator = deliver("--shutdown-grace", "1")
    assert re.search(r'msg="shutdown grace raised to cover an ACS call in flight" grace_s=75\.0', gateway.stderr())
    client = start_stalled_send(gateway, emulator, delay_ms=3000)
    signalled = time.monotonic()
    gateway.signal(signal.SIGTERM)

    # The drain: the listener is closed at once, a new client is refused by the kernel.
    wait_until(lambda: "shutting down: no new connections" in gateway.stderr(), 2, "the shutdown log line")
    wait_until(lambda: not is_listening(gateway.port), 2, "the listening socket to close")
    with pytest.raises(ConnectionRefusedError):
        gateway.connect(timeout=2)
    assert gateway.alive() and client.data_reply is None, "the drain did not wait for the ACS call"

    client.join(15)
    assert not client.is_alive() and client.error is None, client.error
    code, text = client.data_reply
    assert code == 250, text
    match = re.fullmatch(r"2\.0\.0 OK queued as (\S+)", text)
    assert match, text
    operation_id = match.group(1)
    assert client.data_replied_at - signalled >= 2.5  # the stall was waited out, not cut short
    # The transaction is over and the gateway is stopping: the session ends with 421 4.3.2 (or just closes).
    assert client.after == "disconnected" or client.after.startswith("421 4.3.2 "), client.after

    status = gateway.wait_exit(5)
    assert status == 0, f"exit status {status}\n{gateway.stderr()}"
    assert time.monotonic() - signalled < 8

    [recorded] = emulator.messages()
    assert recorded["operationId"] == operation_id
    assert emulator.count("send") == 1 and emulator.count("send", 202) == 1

    lines = log_lines(gateway)
    order = [index_of(lines, r'msg="SIGTERM received; shutting down"'),
             index_of(lines, r'msg="shutting down: no new connections; open transactions may finish" '
                             r'connections=1 grace_s=75\.0'),
             index_of(lines, r'msg=message .*acs\.operation_id=%s .*reason=acs_accepted' % operation_id),
             index_of(lines, r'msg=message .*smtp\.reply="250 2\.0\.0 OK queued as %s"' % operation_id),
             index_of(lines, r'msg="all connections closed"'),
             index_of(lines, r"msg=stopped")]
    assert order == sorted(order), "\n".join(lines)
    assert "shutdown grace period over" not in gateway.stderr()
    assert "shutdown deadline reached" not in gateway.stderr()


def test_session_still_open_at_the_raised_deadline_gets_421_and_the_stalled_call_its_451(deliver):
    # The smallest budget: the grace becomes 1 + 15 = 16 s. The send stalls 30 s, far beyond the 1 s
    # --shutdown-grace and the 1 s budget: the ACS call ends by itself (451 after the budget, the operation
    # not found by the check that follows), inside the drain.
    gateway, emulator = deliver("--shutdown-grace", "1", "--retry-budget", "1", "--attempt-timeout", "1")
    assert re.search(r'msg="shutdown grace raised to cover an ACS call in flight" grace_s=16\.0', gateway.stderr())
    # A second client in a transaction that is not delivering anything: only it can meet the deadline.
    with gateway.connect(timeout=30) as idle_in_transaction:
        idle_in_transaction.greeting()
        idle_in_transaction.ehlo()
        check(idle_in_transaction.cmd("MAIL FROM:<slow@example.com>"), 250, "2.1.0")
        check(idle_in_transaction.cmd("RCPT TO:<r@example.net>"), 250, "2.1.5")

        client = start_stalled_send(gateway, emulator, delay_ms=30000)
        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)
        wait_until(lambda: not is_listening(gateway.port), 2, "the listening socket to close")
        with pytest.raises(ConnectionRefusedError):
            gateway.connect(timeout=2)

        client.join(10)
        assert not client.is_alive() and client.error is None, client.error
        code, text = client.data_reply
        assert (code, text[:6]) == (451, "4.4.1 "), text
        assert client.after == "disconnected" or client.after.startswith("421 4.3.2 "), client.after
        assert gateway.alive(), "the gateway stopped while a transaction was still open"

        # The deadline, 16 s after the signal: the open transaction is closed with 421 4.3.2.
        rest = idle_in_transaction.read_to_eof(timeout=25)
        closed_after = time.monotonic() - signalled
    assert rest.startswith(b"421 4.3.2 "), rest
    assert 15 <= closed_after < 18, closed_after
    status = gateway.wait_exit(3)
    assert status == 0, f"exit status {status}\n{gateway.stderr()}"
    assert emulator.messages() == []  # still stalled inside the emulator

    lines = log_lines(gateway)
    order = [index_of(lines, r'msg="SIGTERM received; shutting down"'),
             index_of(lines, r'msg="shutting down: no new connections; open transactions may finish" '
                             r'connections=2 grace_s=16\.0'),
             index_of(lines, r'msg="ACS unavailable when the retry budget ran out; the client will retry"'),
             index_of(lines, r'msg="shutdown grace period over; closing remaining connections with 421" '
                             r'connections=1'),
             index_of(lines, r'msg="all connections closed"'),
             index_of(lines, r"msg=stopped")]
    assert order == sorted(order), "\n".join(lines)
    # The delivering session was answered by ACS's outcome, never by the deadline.
    assert "shutdown deadline reached while a message was being delivered" not in gateway.stderr()


def test_the_emulator_ends_a_stall_at_sigterm_and_exits_0_promptly(start_emulator):
    """A stall (`delayMs`, up to 10 minutes) must not hold the emulator's own graceful shutdown: the tests
    above leave requests stalled inside it when they end. The stalled request is then answered as usual."""
    import ssl
    import urllib.error
    import urllib.request

    emulator = start_emulator("--bearer-token", "stall-test-token")
    emulator.faults({"delayMs": 60000, "count": 1})
    outcome = {}

    def stalled_request():
        request = urllib.request.Request(
            f"{emulator.endpoint}emails:send?api-version=2025-09-01", data=b"{}", method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer stall-test-token"})
        try:
            with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(emulator.ca)),
                                        timeout=70) as response:
                outcome["status"] = response.status
        except urllib.error.HTTPError as error:
            outcome["status"] = error.code  # an empty body is invalid: 400 once the stall is over
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=stalled_request, daemon=True)
    thread.start()
    wait_until(lambda: emulator.admin("GET", "/admin/faults") == [], 5, "the emulator to hold the request")
    started = time.monotonic()
    emulator.proc.send_signal(signal.SIGTERM)
    assert emulator.proc.wait(10) == 0, emulator.stderr_path.read_text()
    assert time.monotonic() - started < 3, "the stall held up the emulator's exit"
    thread.join(5)
    assert outcome.get("status") == 400, outcome


def test_a_reload_that_lowers_the_grace_does_not_cut_short_a_call_in_flight(start_gateway, start_emulator,
                                                                            certificates, tmp_path):
    # The call in flight runs under the start-up configuration (ACS, grace raised to
    # 20 + 15 s). A reload to a dry run brings the default grace down to the configured 1 s; the SIGTERM that
    # follows must still wait for the stalled call, or its client gets 421 for a message ACS accepts.
    emulator = start_emulator()
    config = tmp_path / "gateway.conf"
    base = (f"senders:\n  sender_address: {SENDER}\ntimeouts:\n  shutdown_grace: 1s\n"
            f"acs:\n  ca_file: {certificates / 'ca.pem'}\n  retry_budget: 20s\n  attempt_timeout: 10s\n")
    config.write_text(base)
    gateway = start_gateway("--config", str(config), check_exit=False,
                            env={"ACS_CONNECTION_STRING": emulator.connection_string})
    assert re.search(r'msg="shutdown grace raised to cover an ACS call in flight" grace_s=35\.0', gateway.stderr())
    client = start_stalled_send(gateway, emulator, delay_ms=4000)

    config.write_text(base + "  dry_run: true\n")
    gateway.signal(signal.SIGHUP)
    wait_until(lambda: 'msg="configuration reloaded"' in gateway.stderr(), 5, "the reload")
    signalled = time.monotonic()
    gateway.signal(signal.SIGTERM)
    wait_until(lambda: "shutting down: no new connections" in gateway.stderr(), 2, "the shutdown log line")
    assert re.search(r'msg="shutting down: no new connections; open transactions may finish" '
                     r'connections=1 grace_s=35\.0', gateway.stderr()), gateway.stderr()

    client.join(30)
    assert client.error is None, client.error
    code, text = client.data_reply
    assert code == 250, text
    assert client.data_replied_at - signalled >= 2.5  # the stall was waited out, not cut at the 1 s grace
    assert gateway.wait_exit(10) == 0
    assert len(emulator.messages()) == 1
