"""`acs-smtp-gateway send-test`: one test message through a running gateway, with a transcript summary."""

from __future__ import annotations

import subprocess

from e2e_support import gateway_binary


def run_send_test(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(gateway_binary()), "send-test", *args], capture_output=True, text=True, timeout=60)


def test_send_test_through_the_outbox(gateway):
    result = run_send_test("--to", "you@example.net", "--server", f"127.0.0.1:{gateway.port}")
    assert result.returncode == 0, result.stderr
    assert "RCPT TO:<you@example.net> -> 250 2.1.5" in result.stdout
    assert "accepted (no ACS operation id" in result.stdout
    [landed] = gateway.wait_for_messages(1)
    assert landed.envelope["rcptTo"] == ["you@example.net"]
    assert landed.record["acsRequest"]["content"]["subject"] == "acs-smtp-gateway test message"


def test_send_test_prints_the_acs_operation_id(start_gateway, start_emulator, certificates):
    emulator = start_emulator()
    gateway = start_gateway("--sender-address", "DoNotReply@example.com", "--acs-ca-file",
                            str(certificates / "ca.pem"), env={"ACS_CONNECTION_STRING": emulator.connection_string})
    result = run_send_test("--to", "you@example.net", "--server", f"127.0.0.1:{gateway.port}")
    assert result.returncode == 0, result.stderr
    [recorded] = emulator.messages()
    assert f"accepted; ACS operation id: {recorded['operationId']}" in result.stdout


def test_send_test_reports_a_refusal_and_exits_1(start_gateway):
    gateway = start_gateway("--verified-domain", "verified.example")
    result = run_send_test("--to", "you@example.net", "--server", f"127.0.0.1:{gateway.port}")
    assert result.returncode == 1
    assert "550 5.7.1" in result.stdout + result.stderr


def test_send_test_without_a_gateway_says_so(tmp_path):
    result = run_send_test("--to", "you@example.net", "--server", "127.0.0.1:9")
    assert result.returncode == 1
    assert "is the gateway running?" in result.stderr


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_send_test_finds_a_gateway_on_the_default_port(tmp_path):
    import pytest

    from e2e_support import Gateway

    if not _port_free(2525):
        pytest.skip("127.0.0.1:2525 is taken on this machine")
    gateway = Gateway(tmp_path, port=2525).start()
    try:
        result = run_send_test("--to", "you@example.net")
        assert result.returncode == 0, result.stderr
        assert "gateway: 127.0.0.1:2525" in result.stdout
        gateway.wait_for_messages(1)
    finally:
        assert gateway.stop() == 0
