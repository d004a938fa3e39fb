"""Secrets never leave the gateway: the real binary at `--log-level trace`, every credential source, messages
that succeed and that fail, SMTP AUTH attempts where AUTH is not offered, and real AUTH exchanges (PLAIN and
LOGIN, right and wrong passwords, a cancelled exchange, the failure brake) over STARTTLS and implicit TLS.

Each secret is recognisable (a fixed text, for the access keys also its base64 form), and the checks look
for it whole, URL-encoded, decoded, and in 12-character windows (a truncated or re-escaped copy) in:
everything the gateway wrote to stderr/stdout, the emulator's log and record file, the outbox files, the
SMTP replies, and the output of `send-test` and `convert`. Where the gateway has to show a text that held
the secret (a token endpoint that echoes it in its error), `***` stands in its place; where it names a
credential at start-up, it names the source (file, variable, systemd credential), never the value.
"""

from __future__ import annotations

import base64
import json
import os
import re
import smtplib
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

import acs_support
from e2e_support import REPO, gateway_binary

SENDER = "DoNotReply@example.com"
MESSAGE = (b"From: App <app@legacy.example>\r\nTo: Ann <ann@example.net>\r\nSubject: secrets e2e\r\n"
           b"Message-ID: <secrets-1@legacy.example>\r\n\r\nNothing secret in here.\r\n")

# 64 octets of text each, so that the decoded key is as recognisable as its base64 form.
ACCESS_KEY_TEXT = b"E2eAccessKey-must-never-be-logged-0123456789-abcdefghijklmnopqr"
WRONG_KEY_TEXT = b"E2eWrongAccessKey-refused-with-401-never-logged-0123456789-abcd"
ACCESS_KEY = base64.b64encode(ACCESS_KEY_TEXT).decode()
WRONG_KEY = base64.b64encode(WRONG_KEY_TEXT).decode()
CLIENT_SECRET = "E2e~ClientSecret.never-logged_0123456789"
WRONG_CLIENT_SECRET = "E2e~WrongClientSecret.echoed-by-the-token-endpoint_98765"
AUTH_USER = "alice"
AUTH_PASSWORD = "E2e-Smtp-Auth-Password-Hunter2!"
AUTH_PLAIN = base64.b64encode(b"\0" + AUTH_USER.encode() + b"\0" + AUTH_PASSWORD.encode()).decode()

FAKE_TOKEN_SERVER = REPO / "Tests" / "ACSClientTests" / "Fixtures" / "fake_token_server.py"


def secret_forms(secret: str | bytes) -> set[str]:
    """The secret whole, URL-encoded and JSON-escaped, plus 12-character windows of it."""
    text = secret.decode() if isinstance(secret, bytes) else secret
    forms = {text, urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text), json.dumps(text)[1:-1]}
    forms |= {text[start:start + 12] for start in range(0, len(text) - 11, 6)}
    return forms


ALL_SECRETS = {
    "access key (base64)": ACCESS_KEY, "access key (decoded)": ACCESS_KEY_TEXT,
    "wrong access key (base64)": WRONG_KEY, "wrong access key (decoded)": WRONG_KEY_TEXT,
    "client secret": CLIENT_SECRET, "wrong client secret": WRONG_CLIENT_SECRET,
    "SMTP AUTH password": AUTH_PASSWORD, "SMTP AUTH PLAIN response": AUTH_PLAIN,
    "SMTP AUTH LOGIN password": base64.b64encode(AUTH_PASSWORD.encode()).decode(),
    "SMTP AUTH password reversed": AUTH_PASSWORD[::-1],
}


def assert_no_secret(where: dict[str, bytes | str]) -> None:
    found = []
    for place, content in where.items():
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        for name, secret in ALL_SECRETS.items():
            for form in secret_forms(secret):
                if form in text:
                    found.append(f"{name} as {form!r} in {place}")
                    break
    assert not found, "secrets leaked:\n" + "\n".join(found)


def files_under(directory: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def emulator_outputs(emulator) -> dict[str, bytes]:
    outputs = {"emulator stderr": emulator.stderr_path.read_bytes()}
    if emulator.record.exists():
        outputs["emulator record"] = emulator.record.read_bytes()
    return outputs


def send(gateway) -> tuple[int, str]:
    with smtplib.SMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=60) as smtp:
        smtp.ehlo()
        assert smtp.mail("app@legacy.example")[0] == 250
        assert smtp.rcpt("ann@example.net")[0] == 250
        code, text = smtp.data(MESSAGE)
        return code, text.decode()


def try_smtp_auth(gateway) -> bytes:
    """AUTH PLAIN with an initial response, then AUTH LOGIN with its two base64 lines; returns all replies.
    The gateway does not offer AUTH: every attempt must be refused without echoing what was sent."""
    with gateway.connect() as client:
        client.greeting()
        ehlo = client.ehlo()
        assert not any(line.upper().startswith("AUTH") for line in ehlo.lines), ehlo
        replies = [client.cmd(f"AUTH PLAIN {AUTH_PLAIN}")]
        replies.append(client.cmd("AUTH LOGIN"))
        replies.append(client.cmd(base64.b64encode(AUTH_USER.encode()).decode()))
        replies.append(client.cmd(base64.b64encode(AUTH_PASSWORD.encode()).decode()))
        for reply in replies:
            assert 500 <= reply.code <= 504, reply
        # The session is still usable after the refusals.
        assert client.cmd("NOOP").code == 250
        assert client.cmd("QUIT").code == 221
        return b"".join(reply.raw for reply in replies)


def run_send_test(gateway, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(gateway_binary()), "send-test", "--to", "you@example.net", "--server", f"127.0.0.1:{gateway.port}"],
        capture_output=True, timeout=60, env={**os.environ, **env})
    assert result.returncode == 0, result
    return result


def run_convert(env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([str(gateway_binary()), "convert", "--sender-address", SENDER], input=MESSAGE,
                            capture_output=True, timeout=30, env={**os.environ, **env})
    assert result.returncode == 0, result
    return result


def assert_traced(gateway) -> None:
    """The log really is at trace level: the debug lines are there."""
    assert re.search(r'level=debug msg="connection opened"|"level":"debug","msg":"connection opened"',
                     gateway.stderr()), gateway.stderr()[-3000:]


CREDENTIAL_VARIABLES = ("ACS_CONNECTION_STRING", "ACS_ENDPOINT", "ACS_ACCESS_KEY", "CREDENTIALS_DIRECTORY",
                        "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                        "AZURE_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Only the credentials a test names reach the processes it starts (they inherit os.environ; a variable
    that is set but empty is an error for the gateway, so they are removed, not emptied)."""
    for variable in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def secret_key(monkeypatch):
    """Emulators started by this test verify with ACCESS_KEY (acs_support reads KEY when it starts one)."""
    monkeypatch.setattr(acs_support, "KEY", ACCESS_KEY)


@pytest.fixture
def acs_gateway(start_gateway, certificates, tmp_path):
    def start(*args: str, env: dict[str, str]):
        return start_gateway("--sender-address", SENDER, "--acs-ca-file", str(certificates / "ca.pem"),
                             "--outbox", str(tmp_path / "acs-copy"), "--log-level", "trace", *args, env=env)

    return start


def exercise_faults(gateway, emulator) -> None:
    """Success, then the faults that make the gateway log most: retried, refused, deferred."""
    assert send(gateway)[0] == 250
    emulator.faults({"status": 429, "retryAfter": 1, "count": 1})
    assert send(gateway)[0] == 250
    emulator.faults({"status": 503, "count": 1})
    assert send(gateway)[0] == 250
    emulator.faults({"status": 400, "code": "InvalidSenderUserName", "message": "Invalid email sender username.",
                     "count": 1})
    assert send(gateway)[0] == 553
    emulator.faults({"status": 401, "count": 1})
    code, text = send(gateway)
    assert (code, text[:6]) == (451, "4.7.0 "), text


def test_connection_string_file(acs_gateway, start_emulator, secret_key, tmp_path):
    emulator = start_emulator()
    secret_file = tmp_path / "connection-string"
    secret_file.write_text(emulator.connection_string + "\n")
    secret_file.chmod(0o644)  # readable by others: the gateway warns, naming the file
    gateway = acs_gateway("--acs-connection-string-file", str(secret_file), env={})
    exercise_faults(gateway, emulator)
    replies = try_smtp_auth(gateway)
    send_test = run_send_test(gateway, {})
    assert len(emulator.messages()) == 4  # three sends and send-test's

    log = gateway.stderr()
    assert_traced(gateway)
    assert f'acs.auth="HMAC access key from the connection string in file {secret_file}"' in log
    assert re.search(r"readable by group or others \(mode 644\); chmod 600 it", log), log
    assert "likely_cause=" in log
    assert_no_secret({"gateway log": log, "SMTP replies": replies, "send-test stdout": send_test.stdout,
                      "send-test stderr": send_test.stderr, **emulator_outputs(emulator),
                      **files_under(tmp_path / "acs-copy")})
    assert len(list((tmp_path / "acs-copy").glob("*.json"))) == 4


def test_environment_connection_string_and_a_wrong_key(acs_gateway, start_emulator, secret_key, tmp_path):
    emulator = start_emulator()
    gateway = acs_gateway("--log-format", "json", env={"ACS_CONNECTION_STRING": emulator.connection_string})
    assert send(gateway)[0] == 250
    emulator.faults({"status": 500, "count": 1})
    assert send(gateway)[0] == 250
    replies = try_smtp_auth(gateway)

    # The same resource with a wrong key: a real 401 from the signature check, not a scripted one.
    wrong = emulator.connection_string.replace(ACCESS_KEY, WRONG_KEY)
    assert wrong != emulator.connection_string
    refused = acs_gateway("--log-format", "json", env={"ACS_CONNECTION_STRING": wrong})
    code, text = send(refused)
    assert (code, text[:6]) == (451, "4.7.0 "), text
    assert emulator.count("send", 401) == 1

    convert = run_convert({"ACS_CONNECTION_STRING": emulator.connection_string})
    assert json.loads(convert.stdout)["senderAddress"] == SENDER

    for gw in (gateway, refused):
        assert_traced(gw)
        assert '"acs.auth":"HMAC access key from the connection string in environment variable ' \
               'ACS_CONNECTION_STRING"' in gw.stderr()
    assert '"likely_cause":' in refused.stderr()
    assert_no_secret({"gateway log": gateway.stderr(), "refused gateway log": refused.stderr(),
                      "SMTP replies": replies, "convert stdout": convert.stdout, "convert stderr": convert.stderr,
                      **emulator_outputs(emulator), **files_under(tmp_path / "acs-copy")})


def test_systemd_credential(acs_gateway, start_emulator, secret_key, tmp_path):
    emulator = start_emulator()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "acs-connection-string").write_text(emulator.connection_string)
    gateway = acs_gateway(env={"CREDENTIALS_DIRECTORY": str(credentials)})
    exercise_faults(gateway, emulator)
    replies = try_smtp_auth(gateway)
    assert_traced(gateway)
    log = gateway.stderr()
    assert ('acs.auth="HMAC access key from the connection string in systemd credential '
            f'{credentials}/acs-connection-string"') in log
    assert "readable by group or others" not in log  # systemd guards $CREDENTIALS_DIRECTORY itself
    assert_no_secret({"gateway log": log, "SMTP replies": replies, **emulator_outputs(emulator),
                      **files_under(tmp_path / "acs-copy")})


def test_access_key_file_with_endpoint(acs_gateway, start_emulator, secret_key, tmp_path):
    emulator = start_emulator()
    key_file = tmp_path / "access-key"
    key_file.write_text(ACCESS_KEY + "\n")
    key_file.chmod(0o600)
    gateway = acs_gateway("--acs-endpoint", emulator.endpoint, "--acs-access-key-file", str(key_file),
                          env={})
    assert send(gateway)[0] == 250
    emulator.faults({"status": 401, "count": 1})
    assert send(gateway)[0] == 451
    assert f'acs.auth="HMAC access key from file {key_file}"' in gateway.stderr()
    assert_no_secret({"gateway log": gateway.stderr(), **emulator_outputs(emulator),
                      **files_under(tmp_path / "acs-copy")})


# --------------------------------------------------------------------------------------------------
# Entra ID: a client secret and the fake token endpoint of the ACSClient tests, over https


@pytest.fixture
def token_server(certificates):
    process = subprocess.Popen(
        [sys.executable, str(FAKE_TOKEN_SERVER), "--secret", CLIENT_SECRET,
         "--cert", str(certificates / "server.pem"), "--key", str(certificates / "server.key")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(process.stdout.readline().decode().strip())
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(5)


def entra_environment(authority: str, **extra: str) -> dict[str, str]:
    return {"AZURE_AUTHORITY_HOST": authority, "AZURE_TENANT_ID": "e2e-tenant", "AZURE_CLIENT_ID": "e2e-client",
            **extra}


def test_entra_client_secret_from_the_environment_and_a_wrong_one_from_a_file(
        acs_gateway, start_emulator, token_server, secret_key, tmp_path):
    # The fake token endpoint issues token-1, token-2, …: the gateway caches the first one for the hour.
    emulator = start_emulator("--bearer-token", "token-1")
    gateway = acs_gateway("--acs-endpoint", emulator.endpoint,
                          env=entra_environment(token_server, AZURE_CLIENT_SECRET=CLIENT_SECRET))
    assert send(gateway)[0] == 250
    emulator.faults({"status": 429, "retryAfter": 1, "count": 1})
    assert send(gateway)[0] == 250
    replies = try_smtp_auth(gateway)
    assert "Entra ID bearer token: client secret (tenant e2e-tenant, client e2e-client), secret from " \
           "environment variable AZURE_CLIENT_SECRET" in gateway.stderr()

    # A wrong secret from a file: the token endpoint answers 401 and echoes it (as a careless proxy might).
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(WRONG_CLIENT_SECRET + "\n")
    secret_file.chmod(0o600)
    refused = acs_gateway("--acs-endpoint", emulator.endpoint, "--azure-client-secret-file", str(secret_file),
                          env=entra_environment(token_server))
    code, text = send(refused)
    assert code == 451, text
    assert f"secret from file {secret_file}" in refused.stderr()
    # The echo is in the log, with the secret replaced by ***.
    assert re.search(r'msg="could not authenticate to ACS" .*error="client secret credential: 127\.0\.0\.1 '
                     r'answered HTTP 401 invalid_client: AADSTS7000215: Invalid client secret provided: \*\*\*"',
                     refused.stderr()), refused.stderr()
    assert emulator.count("send") == 3  # the refused gateway never reached ACS

    for gw in (gateway, refused):
        assert_traced(gw)
        assert "token-1" not in gw.stderr()  # nor the bearer token
    assert_no_secret({"gateway log": gateway.stderr(), "refused gateway log": refused.stderr(),
                      "SMTP replies": replies, **emulator_outputs(emulator), **files_under(tmp_path / "acs-copy")})


# --------------------------------------------------------------------------------------------------
# Start-up failures: the error names where the secret came from, never the secret


def serve_failure(tmp_path, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(gateway_binary()), "serve", "--listen", "127.0.0.1:0", "--outbox", str(tmp_path / "unused"),
         "--log-level", "trace", "--sender-address", SENDER, *args],
        capture_output=True, timeout=30, env={**os.environ, **env})
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode != 0, output
    return output


@pytest.mark.parametrize("connection_string, expected", [
    (f"endpoint=https://127.0.0.1:9;accesskey={ACCESS_KEY_TEXT.decode()}!", "accesskey is not valid base64"),
    (f"{ACCESS_KEY}", "connection string element without '='"),
    (f"accesskey={ACCESS_KEY}", "connection string has no endpoint="),
    (f"endpoint={ACCESS_KEY};accesskey={ACCESS_KEY}", "is not an http(s) URL"),
], ids=["bad-base64", "bare-key", "no-endpoint", "key-as-endpoint"])
def test_malformed_connection_string_is_refused_without_echoing_the_key(tmp_path, connection_string, expected):
    output = serve_failure(tmp_path, env={"ACS_CONNECTION_STRING": connection_string})
    assert expected in output and "ACS_CONNECTION_STRING" in output, output
    assert_no_secret({"serve output": output})


def test_client_secret_without_tenant_is_refused_without_echoing_it(tmp_path):
    output = serve_failure(tmp_path, "--acs-endpoint", "https://127.0.0.1:9",
                           env={"AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_CLIENT_ID": "e2e-client"})
    assert "AZURE_TENANT_ID is missing" in output, output
    assert_no_secret({"serve output": output})


@pytest.mark.parametrize("planted, name", [
    (f"endpoint=https://x.example;accesskey={ACCESS_KEY}", "access key (base64)"),
    (f"truncated {ACCESS_KEY[7:31]}…", "access key (base64)"),
    (f"decoded {ACCESS_KEY_TEXT.decode()}", "access key (decoded)"),
    (f"client_secret={urllib.parse.quote(CLIENT_SECRET, safe='')}&scope=x", "client secret"),
    (f"500 5.5.1 unrecognized: {base64.b64encode(AUTH_PASSWORD.encode()).decode()}", "SMTP AUTH LOGIN password"),
], ids=["whole", "truncated", "decoded", "form-encoded", "auth-login"])
def test_the_leak_check_finds_planted_copies(planted, name):
    """The checks above can fail: each form of copy they look for is found when planted."""
    with pytest.raises(AssertionError, match=re.escape(name)):
        assert_no_secret({"planted text": planted})


# --------------------------------------------------------------------------------------------------
# SMTP AUTH offered: the exchanges themselves


def test_smtp_auth_exchanges_never_log_the_password(start_gateway, tmp_path):
    from tls_support import add_user, issue, make_ca, send_over, start_tls_gateway

    pki = make_ca(tmp_path / "pki")
    issue(pki, "server")
    users = pki / "users"
    passwd = add_user(users, AUTH_USER, AUTH_PASSWORD, ["app@legacy.example"])
    tls = start_tls_gateway(start_gateway, pki, "--log-level", "trace", "--auth-max-failures", "2",
                            "--auth-failure-delay", "0", users=users)
    gateway = tls.gw
    login_user = base64.b64encode(AUTH_USER.encode()).decode()
    login_password = base64.b64encode(AUTH_PASSWORD.encode()).decode()
    replies = b""
    with tls.starttls() as client:
        for command in (f"AUTH PLAIN {AUTH_PLAIN}", "RSET"):
            replies += client.cmd(command).raw
        assert send_over(client).startswith("250 2.0.0")
    with tls.implicit() as client:
        client.ehlo()
        for command in ("AUTH LOGIN", login_user, login_password):
            replies += client.cmd(command).raw
        assert replies.rstrip().endswith(b"Authentication successful")
    with tls.starttls() as client:
        # A wrong password, the real one as the user name, a cancelled LOGIN: the second failure is the limit.
        wrong = base64.b64encode(b"\0" + AUTH_USER.encode() + b"\0" + AUTH_PASSWORD[::-1].encode()).decode()
        for command in (f"AUTH PLAIN {wrong}", "AUTH LOGIN", login_user, "*", "AUTH LOGIN", login_password,
                        login_password):
            replies += client.cmd(command).raw
    with tls.starttls() as client:
        replies += client.cmd(f"AUTH PLAIN {AUTH_PLAIN}").raw  # limited: not even checked
    assert b"421 4.7.0" in replies, replies
    time.sleep(0.3)
    log = gateway.stderr()
    assert_traced(gateway)
    assert log.count('msg="authentication failed"') >= 3
    assert log.count("msg=authenticated ") == 2
    assert_no_secret({"gateway log": log, "SMTP replies": replies, **files_under(gateway.outbox),
                      "passwd output": passwd.stdout + passwd.stderr, "users file": users.read_bytes()})
