"""LAN senders: STARTTLS (RFC 3207), implicit TLS (RFC 8314) and SMTP AUTH (RFC 4954) with real clients —
swaks, curl, openssl s_client and Python's smtplib — against a test CA made here, plus the rules around
them: the STARTTLS injection class (CVE-2011-0411), AUTH only where it can be used, wrong passwords, sender
rights, the failure brake and its fail2ban line, certificate reload without restart, and the TLS version
floor.
"""

from __future__ import annotations

import base64
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from e2e_support import check, free_port, gateway_binary
from tls_support import (ALICE_PASSWORD, PRINTER_PASSWORD, USERS, TLSSMTP, add_user, audit_lines, field, issue,
                         make_ca, send_over, start_tls_gateway)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed")

MESSAGE = b"From: app@legacy.example\r\nTo: you@example.net\r\nSubject: over TLS\r\n\r\nhello\r\n"
# The README's fail2ban filter, as fail2ban reads it: <HOST> is the client address.
FAIL2BAN_REGEX = r'msg="authentication failed" .*auth\.client_ip=<HOST>(?: |$)'


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """The CA, the server certificate (`server.pem`, `server.key`) and the users file (`users`)."""
    directory = make_ca(tmp_path_factory.mktemp("tls"))
    issue(directory, "server")
    for name, (password, senders) in USERS.items():
        add_user(directory / "users", name, password, senders)
    return directory


@pytest.fixture
def tls_gateway(start_gateway, pki):
    return start_tls_gateway(start_gateway, pki, users=pki / "users")


def fail2ban_matches(log: str, host: str) -> int:
    pattern = re.compile(FAIL2BAN_REGEX.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"))
    return sum(1 for line in log.splitlines() if (m := pattern.search(line)) and m.group("host") == host)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --------------------------------------------------------------------------------------------------
# Real clients


def swaks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["swaks", "--from", "app@legacy.example", "--to", "you@example.net", "--ehlo",
                           "client.example", "--header", "Subject: swaks over TLS", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_and_implicit_tls_with_auth(tls_gateway, mechanism):
    starttls = swaks("--server", "127.0.0.1", "--port", str(tls_gateway.starttls_port), "--tls",
                     "--auth", mechanism, "--auth-user", "alice", "--auth-password", ALICE_PASSWORD)
    assert starttls.returncode == 0, starttls.stdout + starttls.stderr
    assert "250 2.0.0 OK" in starttls.stdout
    assert "235 2.7.0" in starttls.stdout
    implicit = swaks("--server", "127.0.0.1", "--port", str(tls_gateway.implicit_port), "--tlsc",
                     "--auth", mechanism, "--auth-user", "alice", "--auth-password", ALICE_PASSWORD)
    assert implicit.returncode == 0, implicit.stdout + implicit.stderr
    gw = tls_gateway.gw
    assert len(gw.wait_for_messages(2)) == 2
    lines = audit_lines(gw.stderr())
    assert len(lines) == 2
    for line in lines:
        assert field(line, "smtp.auth_user") == "alice", line
        assert field(line, "smtp.tls") in ("TLSv1.3", "TLSv1.2"), line
        assert field(line, "smtp.tls_cipher"), line


def test_openssl_s_client_starttls_verifies_the_certificate_and_sees_auth(tls_gateway):
    result = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{tls_gateway.starttls_port}",
         "-CAfile", str(tls_gateway.ca), "-verify_return_error", "-crlf", "-quiet"],
        input="EHLO client.example\nQUIT\n", capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "250-AUTH PLAIN LOGIN" in result.stdout or "250 AUTH PLAIN LOGIN" in result.stdout, result.stdout
    assert "STARTTLS" not in result.stdout, "STARTTLS offered again inside TLS"
    assert "221 2.0.0" in result.stdout
    assert "verify return:1" in result.stderr


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_curl_ssl_reqd_with_user(tls_gateway, tmp_path, scheme):
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    port = tls_gateway.starttls_port if scheme == "smtp" else tls_gateway.implicit_port
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--url", f"{scheme}://127.0.0.1:{port}/client.example", "--ssl-reqd",
         "--cacert", str(tls_gateway.ca), "--user", f"alice:{ALICE_PASSWORD}", "--mail-from", "app@legacy.example",
         "--mail-rcpt", "you@example.net", "-T", str(message)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    landed = tls_gateway.gw.wait_for_messages(1)
    assert len(landed) == 1 and landed[0].eml == MESSAGE


def test_smtplib_starttls_and_login(tls_gateway):
    with smtplib.SMTP("127.0.0.1", tls_gateway.starttls_port, local_hostname="client.example", timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")  # (AUTH too: loopback clients may use it in plaintext)
        smtp.starttls(context=tls_gateway.context())
        smtp.ehlo()
        assert smtp.has_extn("auth") and "LOGIN" in smtp.esmtp_features["auth"]
        smtp.login("printer", PRINTER_PASSWORD)
        smtp.sendmail("scanner@example.org", ["you@example.net"], MESSAGE)
    line = audit_lines(tls_gateway.gw.stderr())[0]
    assert field(line, "smtp.auth_user") == "printer"


# --------------------------------------------------------------------------------------------------
# STARTTLS rules


def test_starttls_injection_is_discarded_and_the_session_reset(tls_gateway):
    gw = tls_gateway.gw
    with TLSSMTP("127.0.0.1", tls_gateway.starttls_port) as client:
        client.greeting()
        client.ehlo()
        # The CVE-2011-0411 class: a command pipelined behind STARTTLS, in the same write, in plaintext.
        client.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\n")
        check(client.reply(), 220, "2.0.0")
        client.wrap(tls_gateway.context())
        # Inside TLS the injected MAIL was never run: RCPT is out of sequence, and EHLO is needed again.
        check(client.cmd("MAIL FROM:<app@legacy.example>"), 503, "5.5.1")
        ehlo = client.ehlo()
        assert "STARTTLS" not in ehlo.lines
        check(client.cmd("RCPT TO:<you@example.net>"), 503, "5.5.1")
        # A second STARTTLS is a sequence error.
        check(client.cmd("STARTTLS"), 503, "5.5.1")
        check(client.cmd("QUIT"), 221)
    assert wait_for(lambda: "discarded input sent after STARTTLS" in gw.stderr())
    assert re.search(r'msg="discarded input sent after STARTTLS before the TLS handshake" octets=%d' % len(
        b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\n"), gw.stderr())
    assert gw.ids() == set()


def test_a_failed_handshake_closes_with_a_log_line(tls_gateway):
    gw = tls_gateway.gw
    with socket.create_connection(("127.0.0.1", tls_gateway.implicit_port), timeout=10) as raw:
        raw.sendall(b"EHLO this is not a TLS ClientHello\r\n")
        raw.settimeout(10)
        data = b""
        while chunk := raw.recv(4096):
            data += chunk
    assert b"220" not in data, "the greeting must never go out in plaintext on an implicit-TLS port"
    assert wait_for(lambda: 'msg="TLS handshake failed; closing the connection"' in gw.stderr()), gw.stderr()


# --------------------------------------------------------------------------------------------------
# AUTH rules


def own_ipv4() -> str:
    from test_access_control import own_address
    return own_address(socket.AF_INET)


def test_auth_is_refused_without_tls_on_a_non_loopback_listener(start_gateway, pki):
    address = own_ipv4()
    port = free_port(address)
    gw = start_gateway("--tls-certificate", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                       "--users-file", str(pki / "users"), "--listener", f"{address}:{port} tls=starttls auth=optional")
    with TLSSMTP(address, port, source=address) as client:
        client.greeting()
        ehlo = client.ehlo()
        assert "STARTTLS" in ehlo.lines
        assert not any(line.startswith("AUTH") for line in ehlo.lines), ehlo
        check(client.auth_plain("alice", ALICE_PASSWORD), 538, "5.7.11")
        check(client.cmd("AUTH LOGIN"), 538, "5.7.11")
        # Not in a trusted network and not authenticated: no relaying.
        reply = check(client.cmd("MAIL FROM:<app@legacy.example>"), 530, "5.7.0")
        assert "STARTTLS" in reply.text
        check(client.cmd("STARTTLS"), 220)
        client.wrap(ssl.create_default_context(cafile=str(pki / "ca.pem")))
        ehlo = client.ehlo()
        assert "AUTH PLAIN LOGIN" in ehlo.lines
        check(client.auth_plain("alice", ALICE_PASSWORD), 235, "2.7.0")
        assert send_over(client).startswith("250 2.0.0")
    assert ALICE_PASSWORD not in gw.stderr()


def test_wrong_password_and_disallowed_sender_are_refused(tls_gateway):
    gw = tls_gateway.gw
    with tls_gateway.starttls() as client:
        check(client.auth_plain("alice", "not-the-password"), 535, "5.7.8")
        check(client.auth_plain("nobody", ALICE_PASSWORD), 535, "5.7.8")
        check(client.auth_plain("alice", ALICE_PASSWORD), 235, "2.7.0")
        assert send_over(client, sender="boss@example.com").startswith("553 5.7.1")
        assert send_over(client, sender="anyone@example.org").startswith("250 2.0.0")
    log = gw.stderr()
    failures = [line for line in log.splitlines() if 'msg="authentication failed"' in line]
    assert len(failures) == 2
    assert field(failures[0], "auth.user") == "alice"  # a known user is named
    assert field(failures[1], "auth.user") is None  # an unknown name is not (it might be a mistyped password)
    assert fail2ban_matches(log, "127.0.0.1") == 2
    assert "not-the-password" not in log
    assert re.search(r'msg=authenticated auth\.mechanism=PLAIN auth\.user=alice', log), log


def test_required_auth_refuses_unauthenticated_mail_even_on_loopback(tls_gateway):
    with tls_gateway.implicit() as client:
        client.ehlo()
        check(client.cmd("MAIL FROM:<app@legacy.example>"), 530, "5.7.0")
        check(client.auth_plain("alice", ALICE_PASSWORD), 235)
        assert send_over(client).startswith("250 2.0.0")


def test_failure_counting_delays_then_421_and_locks_the_address_out(start_gateway, pki):
    tls = start_tls_gateway(start_gateway, pki, "--auth-max-failures", "3", "--auth-failure-delay", "1s",
                            users=pki / "users")
    with tls.starttls() as client:
        check(client.auth_plain("alice", "wrong-1"), 535)
        check(client.auth_plain("alice", "wrong-2"), 535)
        started = time.monotonic()
        check(client.auth_plain("alice", "wrong-3"), 421, "4.7.0")
        assert time.monotonic() - started >= 0.9, "the brake delays the 421"
        client.assert_closed()
    # Over the limit, even the right password gets the delay and 421: it is not checked at all.
    with tls.starttls() as client:
        started = time.monotonic()
        check(client.auth_plain("alice", ALICE_PASSWORD), 421, "4.7.0")
        assert time.monotonic() - started >= 0.9
    log = tls.gw.stderr()
    assert fail2ban_matches(log, "127.0.0.1") == 4
    assert re.search(r'msg="authentication failed" .*auth\.failures=3 .*reason="too many failures"', log), log
    assert ALICE_PASSWORD not in log and "wrong-3" not in log


def test_auth_cancel_and_bad_base64(tls_gateway):
    with tls_gateway.starttls() as client:
        check(client.cmd("AUTH LOGIN"), 334)
        check(client.cmd("*"), 501, "5.0.0")
        check(client.cmd("AUTH PLAIN"), 334)
        check(client.cmd("%%% not base64 %%%"), 501, "5.5.2")
        check(client.cmd("AUTH CRAM-MD5"), 504, "5.5.4")
        check(client.cmd("NOOP"), 250)


# --------------------------------------------------------------------------------------------------
# Certificates and versions


def test_certificate_reload_takes_effect_without_a_restart(start_gateway, pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    first_cert, first_key = issue(pki, "first", common_name="first.example")
    second_cert, second_key = issue(pki, "second", common_name="second.example")
    shutil.copy(first_cert, live / "cert.pem")
    shutil.copy(first_key, live / "key.pem")
    tls = start_tls_gateway(start_gateway, pki, users=pki / "users",
                            certificate=(live / "cert.pem", live / "key.pem"))
    gw = tls.gw
    with tls.implicit() as client:
        assert client.peer_common_name == "first.example"
    # certbot-style renewal: new files in place, then SIGHUP.
    shutil.copy(second_cert, live / "cert.pem")
    shutil.copy(second_key, live / "key.pem")
    gw.signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in gw.stderr()), gw.stderr()
    with tls.implicit() as client:
        assert client.peer_common_name == "second.example"
    assert gw.alive()
    # A key that does not match is refused with a clear error, and the running certificate stays.
    shutil.copy(first_key, live / "key.pem")
    gw.signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reload failed" in gw.stderr()), gw.stderr()
    assert re.search(r"tls\.key \S+key\.pem does not match the certificate", gw.stderr()), gw.stderr()
    with tls.implicit() as client:
        assert client.peer_common_name == "second.example"


def test_users_file_reload_adds_users_and_a_broken_file_keeps_the_running_one(start_gateway, pki, tmp_path):
    users = tmp_path / "users"
    shutil.copy(pki / "users", users)
    tls = start_tls_gateway(start_gateway, pki, users=users)
    gw = tls.gw
    add_user(users, "erp", "erp-Secret-7", ["billing@example.com"])
    with tls.starttls() as client:
        check(client.auth_plain("erp", "erp-Secret-7"), 535)  # not read yet
    gw.signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in gw.stderr()), gw.stderr()
    with tls.starttls() as client:
        check(client.auth_plain("erp", "erp-Secret-7"), 235)
        assert send_over(client, sender="billing@example.com").startswith("250 2.0.0")
    users.write_text(users.read_text() + "mallory:plaintext-password:*\n")
    gw.signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reload failed" in gw.stderr()), gw.stderr()
    assert "mallory: the second field is not a crypt(3) hash" in gw.stderr()
    assert "plaintext-password" not in gw.stderr()
    with tls.starttls() as client:
        check(client.auth_plain("erp", "erp-Secret-7"), 235)


@pytest.mark.parametrize("problem", ["expired", "mismatch", "unreadable"])
def test_a_bad_certificate_stops_the_start_with_a_clear_error(pki, tmp_path, problem):
    if problem == "expired":
        cert, key = issue(pki, "expired", start="20200101000000Z", end="20200201000000Z")
        expected = r"expired on 2020-02-01T00:00:00Z"
    elif problem == "mismatch":
        cert, _ = issue(pki, "mismatch-cert")
        _, key = issue(pki, "mismatch-other")
        expected = r"does not match the certificate"
    else:
        cert, key = pki / "server.pem", tmp_path / "missing.key"
        expected = r"tls\.key \S+missing\.key: cannot read it: No such file or directory"
    port = free_port()
    result = subprocess.run(
        [str(gateway_binary()), "serve", "--config", "none", "--listen", f"127.0.0.1:{free_port()}",
         "--outbox", str(tmp_path / "outbox"), "--tls-certificate", str(cert), "--tls-key", str(key),
         "--listener", f"127.0.0.1:{port} tls=implicit"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 78, result
    assert re.search(expected, result.stderr), result.stderr
    check_config = subprocess.run(
        [str(gateway_binary()), "check-config", "--config", "none", "--tls-certificate", str(cert), "--tls-key",
         str(key), "--listener", f"127.0.0.1:{port} tls=implicit"],
        capture_output=True, text=True, timeout=30)
    assert check_config.returncode == 78, check_config
    assert re.search(expected, check_config.stderr), check_config.stderr


def s_client_tls1(port: int, ca: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0",
         "-CAfile", str(ca), "-crlf"],
        input="QUIT\n", capture_output=True, text=True, timeout=30)


def test_tls_1_0_is_refused_by_default_and_accepted_when_configured(start_gateway, pki):
    default = start_tls_gateway(start_gateway, pki, users=pki / "users")
    refused = s_client_tls1(default.implicit_port, pki / "ca.pem")
    assert "220 " not in refused.stdout, refused.stdout
    assert wait_for(lambda: 'msg="TLS handshake failed; closing the connection"' in default.gw.stderr())
    assert re.search(r'TLS handshake failed.*reason=".*(unsupported protocol|version)', default.gw.stderr())

    legacy = start_tls_gateway(start_gateway, pki, "--tls-min-version", "1.0", users=pki / "users")
    assert "tls.min_version 1.0 accepts TLS versions with known weaknesses" in legacy.gw.stderr()
    accepted = s_client_tls1(legacy.implicit_port, pki / "ca.pem")
    assert "220 " in accepted.stdout, accepted.stdout + accepted.stderr
    assert re.search(r"Protocol\s*:\s*TLSv1\b", accepted.stdout), accepted.stdout


# --------------------------------------------------------------------------------------------------
# The tools


def test_passwd_writes_hashes_only_and_keeps_senders(tmp_path):
    users = tmp_path / "users"
    add_user(users, "erp", "first-secret", ["billing@example.com"])
    text = users.read_text()
    assert "first-secret" not in text
    assert re.fullmatch(r"erp:\$y\$[^:]+:billing@example\.com\n", text), text
    assert users.stat().st_mode & 0o777 == 0o600
    result = add_user(users, "erp", "second-secret", [])
    assert "updated user erp" in result.stdout
    line = users.read_text()
    assert line.endswith(":billing@example.com\n") and line != text
    bad = subprocess.run([str(gateway_binary()), "passwd", "--users-file", str(users), "--sender", "not an address",
                          "x"], input="pw\n", capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "--sender" in bad.stderr


def test_check_config_shows_listeners_certificate_expiry_and_users_without_hashes(pki):
    port = free_port()
    result = subprocess.run(
        [str(gateway_binary()), "check-config", "--config", "none", "--tls-certificate", str(pki / "server.pem"),
         "--tls-key", str(pki / "server.key"), "--users-file", str(pki / "users"),
         "--listener", f"127.0.0.1:{port} tls=starttls auth=required"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"# listener: 127.0.0.1:{port} tls: starttls, auth: required, socket name: submission" in out
    assert re.search(r"# tls: certificate \S+server\.pem: /CN=localhost, chain of 1, valid until "
                     r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+ days\); key \S+server\.key matches", out), out
    assert "#   alice: may send as app@legacy.example, *@example.org" in out
    assert "#   printer: may send as scanner@example.org" in out
    assert "$y$" not in out, "a hash was shown"
    # The printed configuration is a valid file, the listener a mapping.
    assert re.search(r'listeners: \[\{address: "?127\.0\.0\.1:%d"?, tls: starttls, auth: required, '
                     r'name: submission\}\]' % port, out), out


def test_socket_activation_maps_file_descriptor_names_to_listeners(tmp_path, pki, gateway_bin):
    """A socket named `submission` (FileDescriptorName=) serves the listener of that name: STARTTLS offered,
    AUTH required, although systemd bound it and the listener's own address stays unbound."""
    from test_systemd import ActivatedGateway, listening_socket, port_is_open

    configured_port = free_port()

    class NamedActivatedGateway(ActivatedGateway):
        @property
        def command(self) -> list[str]:
            return super().command + [
                "--tls-certificate", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                "--users-file", str(pki / "users"),
                "--listener", f"127.0.0.1:{configured_port} tls=starttls auth=required"]

    listener = listening_socket()
    gw = NamedActivatedGateway(tmp_path, listener, names="submission", name="named")
    try:
        gw.start()
        with TLSSMTP("127.0.0.1", gw.port) as client:
            client.greeting()
            assert "STARTTLS" in client.ehlo().lines
            check(client.cmd("MAIL FROM:<app@legacy.example>"), 530, "5.7.0")
            check(client.cmd("STARTTLS"), 220)
            client.wrap(ssl.create_default_context(cafile=str(pki / "ca.pem")))
            client.ehlo()
            check(client.auth_plain("alice", ALICE_PASSWORD), 235)
        assert re.search(r'msg="listening on a socket passed by systemd" address=127\.0\.0\.1:%d fd=3 '
                         r'fd_name=submission listener\.auth=required listener\.tls=starttls' % gw.port, gw.stderr())
        assert not port_is_open(configured_port)
    finally:
        assert gw.stop(5) == 0, gw.stderr()[-3000:]
        listener.close()
