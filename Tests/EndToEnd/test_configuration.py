"""Configuration end to end (README "Configuration"): the real binary reading a configuration file, the ACSGW_ environment
and flags; check-config (offline and --online against the emulator); SIGHUP with a valid and an invalid
file, including credentials read again.
"""

from __future__ import annotations

import re
import signal
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from e2e_support import REPO, Gateway, free_port
from test_systemd import NotifySocket

SHIPPED = REPO / "etc" / "acs-smtp-gateway" / "gateway.conf"
SENDER = "DoNotReply@example.com"
MESSAGE = b"From: App <app@legacy.example>\r\nTo: ann@example.net\r\nSubject: config\r\n\r\nhello\r\n"


def run(gateway_bin, *args, env=None, timeout=30):
    import os

    return subprocess.run([str(gateway_bin), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def ehlo_size(gw: Gateway) -> int:
    with smtplib.SMTP(gw.host, gw.port, local_hostname="client.example", timeout=10) as smtp:
        smtp.ehlo()
        return int(smtp.esmtp_features["size"])


def wait_for_log(gw: Gateway, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = gw.stderr()
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r} in {timeout}s:\n{gw.stderr()[-4000:]}")


# --------------------------------------------------------------------------------------------------
# check-config


def test_check_config_accepts_the_shipped_file_and_prints_every_key(gateway_bin):
    result = run(gateway_bin, "check-config", "--config", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    assert f"# file: {SHIPPED}" in result.stdout
    for section in ["smtp", "limits", "timeouts", "senders", "translation", "acs", "outbox", "logging", "admin"]:
        assert f"\n{section}:\n" in "\n" + result.stdout
    assert re.search(r"^  max_message_size: 7MiB +# built-in default$", result.stdout, re.M)
    assert "# delivery: outbox ./outbox (no ACS configured)" in result.stdout


def test_precedence_file_then_environment_then_flags(gateway_bin, tmp_path):
    config = tmp_path / "gateway.conf"
    config.write_text("limits:\n  max_message_size: 1MiB\n  max_errors: 3\nsmtp:\n  hostname: from-file.example\n")
    result = run(gateway_bin, "check-config", "--config", str(config), "--max-errors", "4",
                 env={"ACSGW_LIMITS_MAX_MESSAGE_SIZE": "2MiB", "ACSGW_LIMITS_MAX_ERRORS": "5"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(rf"^  hostname: from-file.example +# {re.escape(str(config))}:5$", out, re.M), out
    assert re.search(r"^  max_message_size: 2MiB +# environment ACSGW_LIMITS_MAX_MESSAGE_SIZE$", out, re.M), out
    assert re.search(r"^  max_errors: 4 +# --max-errors$", out, re.M), out


def test_serve_uses_the_file_and_flags_override_it(start_gateway, tmp_path):
    config = tmp_path / "gateway.conf"
    config.write_text("limits:\n  max_message_size: 64KiB\nsmtp:\n  hostname: configured.example\n")
    gw = start_gateway("--config", str(config))
    assert ehlo_size(gw) == 65536
    with smtplib.SMTP(gw.host, gw.port, timeout=10) as smtp:
        assert "configured.example" in smtp.ehlo()[1].decode()
    # The harness's --listen and --outbox flags won over anything in the file: the message is in its outbox.
    with smtplib.SMTP(gw.host, gw.port, timeout=10) as smtp:
        smtp.sendmail("a@example.com", ["b@example.net"], MESSAGE)
    gw.wait_for_messages(1)
    assert "config_file=" + str(config) in gw.stderr()


def test_a_bad_file_stops_serve_with_file_key_line_and_exit_78(gateway_bin, tmp_path):
    config = tmp_path / "gateway.conf"
    config.write_text("smtp:\n  listen: [127.0.0.1:2525]\nlimits:\n  max_message_size: big\n  max_recipeints: 10\n")
    result = run(gateway_bin, "serve", "--config", str(config), timeout=10)
    assert result.returncode == 78, result
    assert f"{config}:4: limits.max_message_size: expected a size in octets" in result.stderr
    assert 'got "big"' in result.stderr
    assert f"{config}:5: limits.max_recipeints: unknown key; did you mean max_recipients?" in result.stderr
    # check-config reports the same problems and exits non-zero too.
    checked = run(gateway_bin, "check-config", "--config", str(config))
    assert checked.returncode == 78 and "max_recipeints" in checked.stderr


def test_unknown_environment_variable_and_missing_file_are_errors(gateway_bin, tmp_path):
    typo = run(gateway_bin, "check-config", "--config", "none", env={"ACSGW_SMTP_HOSTNMAE": "x.example"})
    assert typo.returncode == 78
    assert "environment ACSGW_SMTP_HOSTNMAE: not a configuration variable (did you mean ACSGW_SMTP_HOSTNAME?)" \
        in typo.stderr
    missing = run(gateway_bin, "check-config", "--config", str(tmp_path / "absent.conf"))
    assert missing.returncode == 78
    assert f"{tmp_path / 'absent.conf'}: cannot read the configuration file: no such file" in missing.stderr


def test_secrets_in_the_file_are_refused_and_never_printed(gateway_bin, tmp_path):
    config = tmp_path / "gateway.conf"
    config.write_text("acs:\n  connection_string: endpoint=https://x.communication.azure.com/;accesskey=U2VjcmV0S2V5\n")
    result = run(gateway_bin, "check-config", "--config", str(config))
    assert result.returncode == 78
    assert f"{config}:2: acs.connection_string: secrets are never read from the configuration file" in result.stderr
    assert "U2VjcmV0S2V5" not in result.stderr + result.stdout


def test_check_config_shows_secrets_as_stars(gateway_bin, tmp_path):
    key = "c2VjcmV0LWtleS1mb3ItdGhlLWNoZWNrLWNvbmZpZy10ZXN0"
    secret_file = tmp_path / "connection-string"
    secret_file.write_text(f"endpoint=https://contoso.communication.azure.com/;accesskey={key}\n")
    secret_file.chmod(0o600)
    result = run(gateway_bin, "check-config", "--config", "none", "--acs-connection-string-file", str(secret_file),
                 "--sender-address", SENDER, "--acs-proxy", "http://proxyuser:proxypass@127.0.0.1:3128")
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert key not in out and "proxypass" not in out
    assert "proxy: \"http://proxyuser:***@127.0.0.1:3128\"" in out or "proxy: http://proxyuser:***@127.0.0.1:3128" in out
    assert re.search(r"# credentials: HMAC access key from the connection string in file .*; secret \*\*\*", out), out
    assert "# not contacted ACS" in out


def test_check_config_online_against_the_emulator(gateway_bin, start_emulator, certificates, tmp_path):
    emulator = start_emulator()
    env = {"ACS_CONNECTION_STRING": emulator.connection_string}
    args = ["check-config", "--config", "none", "--online", "--quiet", "--sender-address", SENDER,
            "--acs-ca-file", str(certificates / "ca.pem")]
    good = run(gateway_bin, *args, env=env)
    assert good.returncode == 0, good.stderr
    assert "accepted the credentials (HTTP 404 for a made-up operation id)" in good.stdout
    assert "senders not checked" in good.stdout
    assert emulator.messages() == [], "--online must not send mail"

    wrong = emulator.connection_string.rsplit("accesskey=", 1)[0] + "accesskey=" + "d3Jvbmcta2V5LXdyb25nLWtleQ=="
    bad = run(gateway_bin, *args, env={"ACS_CONNECTION_STRING": wrong})
    assert bad.returncode == 1
    assert "ACS refused the credentials: HTTP 401" in bad.stderr
    assert "d3Jvbmcta2V5" not in bad.stdout + bad.stderr

    unreachable = run(gateway_bin, "check-config", "--config", "none", "--online", "--quiet", "--sender-address",
                      SENDER, "--attempt-timeout", "2s", "--acs-ca-file", str(certificates / "ca.pem"),
                      env={"ACS_CONNECTION_STRING": f"endpoint=https://127.0.0.1:{free_port()}/;accesskey=a2V5"})
    assert unreachable.returncode == 1
    assert "could not check ACS" in unreachable.stderr


# --------------------------------------------------------------------------------------------------
# SIGHUP


def test_sighup_applies_a_valid_file_to_new_sessions_without_dropping_open_ones(start_gateway, tmp_path):
    config = tmp_path / "gateway.conf"
    config.write_text("limits:\n  max_message_size: 64KiB\n")
    notify = NotifySocket(abstract=False)
    try:
        gw = start_gateway("--config", str(config), env={"NOTIFY_SOCKET": notify.address})
        notify.wait_for(lambda text: "READY=1" in text)
        assert ehlo_size(gw) == 65536
        # A session open across the reload keeps working (and keeps its limits).
        open_session = smtplib.SMTP(gw.host, gw.port, local_hostname="client.example", timeout=10)
        open_session.ehlo()
        assert open_session.mail("a@example.com")[0] == 250

        config.write_text("limits:\n  max_message_size: 128KiB\nlogging:\n  level: debug\n")
        gw.signal(signal.SIGHUP)
        wait_for_log(gw, r"msg=\"configuration reloaded\"")
        assert ehlo_size(gw) == 131072

        assert open_session.rcpt("b@example.net")[0] == 250
        assert open_session.data(MESSAGE)[0] == 250
        open_session.quit()
        gw.wait_for_messages(1)
        # The new log level applies: debug lines appear after the reload.
        with smtplib.SMTP(gw.host, gw.port, timeout=10) as smtp:
            smtp.ehlo()
        wait_for_log(gw, r"level=debug")
        texts = notify.wait_for(lambda text: "RELOADING=1" in text)
        reloading = next(i for i, text in enumerate(texts) if "RELOADING=1" in text)
        assert "MONOTONIC_USEC=" in texts[reloading]
        assert any("READY=1" in text and "Reloaded" in text for text in texts[reloading + 1:]), texts
        assert gw.alive()
    finally:
        notify.close()


def test_sighup_with_an_invalid_file_keeps_the_running_configuration(start_gateway, tmp_path):
    config = tmp_path / "gateway.conf"
    config.write_text("limits:\n  max_message_size: 64KiB\n")
    notify = NotifySocket(abstract=True)
    try:
        gw = start_gateway("--config", str(config), env={"NOTIFY_SOCKET": notify.address})
        notify.wait_for(lambda text: "READY=1" in text)
        config.write_text("limits:\n  max_message_size: 128KiB\n  max_recipients: lots\n")
        gw.signal(signal.SIGHUP)
        log = wait_for_log(gw, r"configuration reload failed")
        assert "the running configuration stays in force" in log
        assert f"{config}:3: limits.max_recipients: expected a whole number" in log
        assert ehlo_size(gw) == 65536, "the old configuration must stay in force"
        notify.wait_for(lambda text: "READY=1" in text and "Reload failed" in text)
        # Still serving.
        with smtplib.SMTP(gw.host, gw.port, timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        gw.wait_for_messages(1)
        # A missing file is refused the same way.
        config.unlink()
        gw.signal(signal.SIGHUP)
        wait_for_log(gw, r"cannot read the configuration file: no such file")
        assert ehlo_size(gw) == 65536 and gw.alive()
    finally:
        notify.close()


def test_sighup_reads_the_credentials_again(start_gateway, start_emulator, certificates, tmp_path):
    emulator = start_emulator()
    secret = tmp_path / "connection-string"
    secret.write_text(emulator.connection_string)
    secret.chmod(0o600)
    config = tmp_path / "gateway.conf"
    config.write_text(f"senders:\n  sender_address: {SENDER}\nacs:\n  connection_string_file: {secret}\n"
                      f"  ca_file: {certificates / 'ca.pem'}\n  retry_budget: 5s\n  attempt_timeout: 2s\n")
    gw = start_gateway("--config", str(config))

    def send() -> tuple[int, str]:
        with smtplib.SMTP(gw.host, gw.port, local_hostname="client.example", timeout=60) as smtp:
            smtp.ehlo()
            smtp.mail("app@legacy.example")
            smtp.rcpt("ann@example.net")
            code, text = smtp.data(MESSAGE)
            return code, text.decode()

    assert send()[0] == 250
    # Rotate to a key the emulator does not know: after SIGHUP the gateway signs with it, and ACS says 401.
    secret.write_text(emulator.connection_string.rsplit("accesskey=", 1)[0] + "accesskey=cm90YXRlZC1rZXktdGhhdC1pcy13cm9uZw==")
    gw.signal(signal.SIGHUP)
    wait_for_log(gw, r"msg=\"configuration reloaded\"")
    code, text = send()
    assert (code, text.split(" ")[0]) == (451, "4.7.0"), (code, text)
    # And back: the right key works again without a restart.
    secret.write_text(emulator.connection_string)
    gw.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while gw.stderr().count("configuration reloaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert send()[0] == 250
    assert len(emulator.messages()) == 2
    assert "cm90YXRlZC1rZXk" not in gw.stderr()


# --------------------------------------------------------------------------------------------------
# Review findings


def test_a_secret_pasted_as_a_file_name_is_never_printed(gateway_bin, tmp_path):
    key = "yVWg44XFq0Zr3bT8mN2pLk7sD1fH9jQ4wE6rT0yU2iO5pA8sD3fG7hJ1kL4zX6cV9bN2mQ5wE8rT1yU4iO7pA0sD=="
    config = tmp_path / "gateway.conf"
    config.write_text(f'senders:\n  sender_address: {SENDER}\nacs:\n'
                      f'  connection_string_file: "endpoint=https://contoso.communication.azure.com/;accesskey={key}"\n')
    for command in (["check-config"], ["serve"]):
        result = run(gateway_bin, *command, "--config", str(config), timeout=10)
        assert result.returncode == 78, result
        assert key[:12] not in result.stdout + result.stderr
        assert f"{config}:4: acs.connection_string_file: expected a file system path" in result.stderr
    endpoint = run(gateway_bin, "check-config", "--config", "none", "--sender-address", SENDER,
                   env={"ACS_ENDPOINT": f"endpoint=https://x/;accesskey={key}"})
    assert endpoint.returncode == 1 and key[:12] not in endpoint.stdout + endpoint.stderr
    assert "ACS_ENDPOINT '(a value that looks like a secret, not shown)'" in endpoint.stderr


def test_half_done_entra_setup_stops_instead_of_using_the_outbox(gateway_bin, tmp_path):
    secret = tmp_path / "azure-client-secret"
    secret.write_text("not-a-real-secret\n")
    secret.chmod(0o600)
    config = tmp_path / "gateway.conf"
    config.write_text(f"senders:\n  sender_address: {SENDER}\nacs:\n  client_secret_file: {secret}\n"
                      "  tenant_id: 00000000-0000-0000-0000-000000000001\n  client_id: 00000000-0000-0000-0000-000000000002\n")
    result = run(gateway_bin, "serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}", timeout=10)
    assert result.returncode == 78, result
    assert "no ACS endpoint" in result.stderr
    online = run(gateway_bin, "check-config", "--config", "none", "--online", "--quiet")
    assert online.returncode == 1 and "no ACS is configured" in online.stderr


def test_no_flags_turn_file_booleans_off(gateway_bin, tmp_path):
    config = tmp_path / "gateway.conf"
    config.write_text("acs:\n  dry_run: true\n")
    result = run(gateway_bin, "check-config", "--config", str(config), "--no-dry-run")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  dry_run: false +# --dry-run$", result.stdout, re.M), result.stdout
