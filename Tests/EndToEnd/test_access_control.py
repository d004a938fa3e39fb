"""Access control from day one: loopback only by default (554 5.7.1 at connect for anyone else),
`--allow-network CIDR` (IPv4 and IPv6) admits more. The gateway must never be an open relay by default.

Non-loopback clients are simulated with the machine's own non-loopback address: the client socket is
bound to it, so the gateway sees that address as the peer.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess

import pytest

from e2e_support import accepted_id, check, data_payload, free_port


def local_addresses(family: int) -> list[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    found = []
    for text in out.split():
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local:
            continue
        if (family == socket.AF_INET) != (address.version == 4):
            continue
        try:  # usable as a source address here?
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((text, 0))
        except OSError:
            continue
        found.append(text)
    return found


def own_address(family: int) -> str:
    addresses = local_addresses(family)
    if not addresses:
        kind = "IPv4" if family == socket.AF_INET else "IPv6"
        pytest.skip(f"this machine has no usable non-loopback {kind} address (hostname -I), so a client "
                    f"outside the loopback networks cannot be simulated")
    return addresses[0]


def send_one(gw, source: str) -> str:
    with gw.connect(source=source) as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(b"Subject: admitted\r\n\r\nhi\r\n"))
        return accepted_id(smtp.reply())


def assert_denied(gw, source: str) -> None:
    with gw.connect(source=source) as smtp:
        check(smtp.reply(), 554, "5.7.1")
        # Nothing else is served: the connection is closed, or every command but QUIT is refused.
        try:
            smtp.send(b"EHLO client.example\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<r@example.com>\r\n")
            rest = smtp.read_to_eof()
        except (BrokenPipeError, ConnectionResetError):
            rest = b""
        for line in rest.split(b"\r\n"):
            assert not line.startswith((b"2", b"3")), f"a denied client was served: {rest!r}"


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_non_loopback_client_is_denied_by_default(start_gateway, family):
    address = own_address(family)
    gw = start_gateway(listen_host=address)
    assert_denied(gw, address)
    assert gw.files() == []


def test_wildcard_listen_admits_loopback_and_denies_others(start_gateway):
    address = own_address(socket.AF_INET)
    gw = start_gateway(listen_host="0.0.0.0")
    gw.host = "127.0.0.1"  # clients reach it through loopback ...
    message_id = send_one(gw, "127.0.0.1")
    gw.host = address      # ... and through the machine's own address
    assert_denied(gw, address)
    (landed,) = gw.messages()
    assert landed.id == message_id
    assert landed.record["client"]["address"] == "127.0.0.1"


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_allow_network_admits_exactly_that_network(start_gateway, family):
    address = own_address(family)
    host_prefix = 32 if family == socket.AF_INET else 128
    gw = start_gateway("--allow-network", f"{address}/{host_prefix}", listen_host=address)
    message_id = send_one(gw, address)
    (landed,) = gw.messages()
    assert landed.id == message_id
    assert landed.record["client"]["address"] == address


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_allow_network_wider_cidr_and_non_matching_cidr(start_gateway, family):
    address = own_address(family)
    ip = ipaddress.ip_address(address)
    wide = ipaddress.ip_network(f"{address}/{24 if ip.version == 4 else 64}", strict=False)
    # A neighbouring network of the same size that does not contain the address.
    other = ipaddress.ip_network((int(wide.network_address) ^ (1 << (wide.max_prefixlen - wide.prefixlen)),
                                  wide.prefixlen))
    assert ip in wide and ip not in other
    admitting = start_gateway("--allow-network", str(wide), listen_host=address)
    send_one(admitting, address)
    refusing = start_gateway("--allow-network", str(other), listen_host=address)
    assert_denied(refusing, address)


def test_ipv6_loopback_is_admitted(start_gateway):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    gw = start_gateway(listen_host="::1")
    send_one(gw, "::1")
    (landed,) = gw.messages()
    assert landed.record["client"]["address"] == "::1"


def test_invalid_allow_network_is_refused_at_startup(gateway_bin, tmp_path):
    result = subprocess.run([str(gateway_bin), "serve", "--listen", f"127.0.0.1:{free_port()}",
                             "--outbox", str(tmp_path), "--allow-network", "10.0.0.0/33"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert "allow-network" in (result.stderr + result.stdout)
