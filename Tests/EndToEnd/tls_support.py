"""Helpers for the TLS and AUTH end-to-end tests: a test CA with server certificates made by the openssl CLI
(good, for another name, expired, with a mismatched key), a users file written by `acs-smtp-gateway passwd`,
and a gateway with a STARTTLS listener and an implicit-TLS listener beside its plain one.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from e2e_support import SOCKET_TIMEOUT, RawSMTP, free_port, gateway_binary

ALICE_PASSWORD = "Tr0ub4dor&3-alice"
PRINTER_PASSWORD = "print-Me-9-please"
# alice may send as app@legacy.example and anything @example.org; printer only as scanner@example.org.
USERS = {
    "alice": (ALICE_PASSWORD, ["app@legacy.example", "*@example.org"]),
    "printer": (PRINTER_PASSWORD, ["scanner@example.org"]),
}


def openssl(directory: Path, script: str) -> None:
    subprocess.run(["bash", "-c", "set -e\n" + textwrap.dedent(script)], cwd=directory, check=True,
                   capture_output=True, timeout=60)


def make_ca(directory: Path) -> Path:
    """A CA (`ca.pem`, `ca.key`) and a minimal `openssl ca` setup, so certificates can get any dates."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl(directory, """
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \\
          -days 2 -subj /CN=acs-tls-e2e-ca -addext basicConstraints=critical,CA:TRUE \\
          -addext keyUsage=critical,keyCertSign,cRLSign
        mkdir -p issued && : > index.txt && echo 1000 > serial
        cat > ca.cnf <<'EOF'
        [ca]
        default_ca = test
        [test]
        dir = .
        database = index.txt
        new_certs_dir = issued
        serial = serial
        certificate = ca.pem
        private_key = ca.key
        default_md = sha256
        policy = anything
        unique_subject = no
        copy_extensions = copy
        [anything]
        commonName = supplied
        EOF
        """)
    return directory


def issue(ca: Path, name: str, common_name: str = "localhost", start: str | None = None,
          end: str | None = None) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost signed by the CA: `<name>.pem` and `<name>.key` (0600).
    `start`/`end` (YYYYMMDDHHMMSSZ) set its validity; by default it is valid from now for two days."""
    dates = f"-startdate {start} -enddate {end}" if start and end else "-days 2"
    openssl(ca, f"""
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key -out {name}.csr \\
          -subj /CN={common_name} -addext subjectAltName=IP:127.0.0.1,DNS:localhost \\
          -addext extendedKeyUsage=serverAuth
        openssl ca -batch -config ca.cnf {dates} -in {name}.csr -out {name}.pem -notext
        chmod 600 {name}.key
        """)
    return ca / f"{name}.pem", ca / f"{name}.key"


def add_user(users: Path, name: str, password: str, senders: list[str]) -> subprocess.CompletedProcess:
    command = [str(gateway_binary()), "passwd", "--users-file", str(users)]
    for sender in senders:
        command += ["--sender", sender]
    result = subprocess.run(command + [name], input=password + "\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result
    return result


@dataclass
class TLSGateway:
    """A gateway with a plain listener (`gw.port`), a STARTTLS one and an implicit-TLS one."""

    gw: object
    starttls_port: int
    implicit_port: int
    ca: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def starttls(self, ehlo: bool = True) -> "TLSSMTP":
        client = TLSSMTP("127.0.0.1", self.starttls_port)
        client.greeting()
        client.ehlo()
        reply = client.cmd("STARTTLS")
        assert reply.code == 220, reply
        client.wrap(self.context())
        if ehlo:
            client.ehlo()
        return client

    def implicit(self) -> "TLSSMTP":
        client = TLSSMTP("127.0.0.1", self.implicit_port, wrap=self.context())
        client.greeting()
        return client


class TLSSMTP(RawSMTP):
    """RawSMTP whose socket can be switched to TLS (after STARTTLS, or at once for implicit TLS)."""

    def __init__(self, host: str, port: int, wrap: ssl.SSLContext | None = None, source: str | None = None):
        super().__init__(host, port, source=source)
        if wrap is not None:
            self.wrap(wrap)

    def wrap(self, context: ssl.SSLContext) -> None:
        assert self.buffer == b"", f"plaintext left before the handshake: {self.buffer!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.sock.settimeout(SOCKET_TIMEOUT)

    def auth_plain(self, user: str, password: str):
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    @property
    def peer_common_name(self) -> str:
        subject = dict(item[0] for item in self.sock.getpeercert()["subject"])
        return subject["commonName"]


def start_tls_gateway(start_gateway, directory: Path, *extra: str, users: Path | None = None,
                      starttls_auth: str = "optional", implicit_auth: str = "required",
                      certificate: tuple[Path, Path] | None = None, check_exit: bool = True) -> TLSGateway:
    cert, key = certificate or (directory / "server.pem", directory / "server.key")
    starttls_port, implicit_port = free_port(), free_port()
    arguments = [
        "--tls-certificate", str(cert), "--tls-key", str(key),
        "--listener", f"127.0.0.1:{starttls_port} tls=starttls auth={starttls_auth}",
        "--listener", f"127.0.0.1:{implicit_port} tls=implicit auth={implicit_auth}",
    ]
    if users is not None:
        arguments += ["--users-file", str(users)]
    gw = start_gateway(*arguments, *extra, check_exit=check_exit)
    return TLSGateway(gw, starttls_port, implicit_port, directory / "ca.pem")


def audit_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if 'msg=message ' in line]


def field(line: str, key: str) -> str | None:
    match = re.search(r'(?:^| )%s=("(?:[^"\\]|\\.)*"|\S+)' % re.escape(key), line)
    if not match:
        return None
    value = match.group(1)
    return value[1:-1] if value.startswith('"') else value


def send_over(client: RawSMTP, sender: str = "app@legacy.example", subject: str = "tls e2e") -> str:
    """MAIL, RCPT, DATA on an open session; returns the final reply's code and text."""
    reply = client.cmd(f"MAIL FROM:<{sender}>")
    if reply.code != 250:
        return f"{reply.code} {reply.text}"
    assert client.cmd("RCPT TO:<you@example.net>").code == 250
    assert client.cmd("DATA").code == 354
    client.send(f"Subject: {subject}\r\n\r\nhello over TLS\r\n.\r\n")
    reply = client.reply()
    return f"{reply.code} {reply.text}"


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]
