"""Helpers for the end-to-end suite: a handle on a running gateway process and a raw SMTP client.

Everything here talks only to 127.0.0.1 (or, for the access-control tests, the machine's own address),
and every socket operation has a timeout so a misbehaving gateway cannot hang the suite.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / ".build" / "debug" / "acs-smtp-gateway"
SOCKET_TIMEOUT = 10.0

CRLF = b"\r\n"


def gateway_binary() -> Path:
    return Path(os.environ.get("GATEWAY_BIN", str(DEFAULT_BIN)))


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# The outbox


@dataclass
class Landed:
    """One message in the outbox: `<id>.eml` and `<id>.json`."""

    id: str
    eml: bytes
    record: dict

    @property
    def envelope(self) -> dict:
        return self.record["envelope"]


# --------------------------------------------------------------------------------------------------
# The gateway process


class Gateway:
    """A running `acs-smtp-gateway serve` on a free port with its own outbox directory."""

    def __init__(self, workdir: Path, args: list[str] | None = None, listen_host: str = "127.0.0.1",
                 port: int | None = None, name: str = "gw", env: dict[str, str] | None = None):
        self.binary = gateway_binary()
        self.env = {**os.environ, **(env or {})}
        self.host = listen_host
        self.port = port or free_port(listen_host)
        self.outbox = workdir / f"{name}-outbox"
        self.outbox.mkdir(parents=True, exist_ok=True)
        # Each gateway its own spool (the default under /var/lib would be shared by every test).
        self.spool = workdir / f"{name}-spool"
        self.stderr_path = workdir / f"{name}-stderr.log"
        self.extra_args = list(args or [])
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        # Extra subprocess.Popen arguments (pass_fds, preexec_fn), e.g. for socket activation tests.
        self.popen_options: dict = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def command(self) -> list[str]:
        # With --config the file decides the log level (flags would override it).
        level = [] if "--config" in self.extra_args else ["--log-level", "info"]
        # The tests written before the spool expect direct delivery (every ACS outcome reaches the client);
        # the spool's tests name their mode.
        mode = [] if "--delivery-mode" in self.extra_args else ["--delivery-mode", "direct"]
        spool = [] if "--spool-directory" in self.extra_args else ["--spool-directory", str(self.spool)]
        return [str(self.binary), "serve", "--listen", self.listen, "--outbox", str(self.outbox),
                *level, *mode, *spool, *self.extra_args]

    def start(self, ready_timeout: float = 15.0) -> "Gateway":
        self._stderr_file = open(self.stderr_path, "wb")
        for attempt in range(40):
            try:
                self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._stderr_file,
                                             stderr=self._stderr_file, cwd=str(self.outbox.parent), env=self.env,
                                             **self.popen_options)
                break
            except OSError as error:  # ETXTBSY: `swift build` is replacing the binary right now
                if error.errno != errno.ETXTBSY or attempt == 39:
                    raise
                time.sleep(0.25)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode} before it was ready\n"
                                   f"command: {self.command}\n{self.stderr()}")
            if "ready" in self.stderr() and self._port_accepts():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"gateway did not become ready in {ready_timeout}s\n{self.stderr()}")

    def _port_accepts(self) -> bool:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1)
                # A probe from loopback (or from the listen address itself when it is not loopback):
                # either way it reaches the listening socket; we close it without reading.
                probe.connect((self.host, self.port))
                return True
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM, then wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            status = self.wait_exit(timeout)
            if status is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
                self.returncode = None
        else:
            self.returncode = self.proc.returncode
        self._stderr_file.close()
        return self.returncode

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def thread_count(self) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^Threads:\s+(\d+)", text, re.M).group(1))

    # -- the outbox --------------------------------------------------------------------------------

    def ids(self) -> set[str]:
        return {p.stem for p in self.outbox.glob("*.json")}

    def messages(self, exclude: set[str] | None = None) -> list[Landed]:
        """Every message in the outbox (oldest first), optionally excluding a previous `ids()` snapshot.

        Also checks the pairing rule: no stray temp files, and each .json has its .eml."""
        exclude = exclude or set()
        landed = []
        for json_path in self.outbox.glob("*.json"):
            if json_path.stem in exclude:
                continue
            record = json.loads(json_path.read_text(encoding="utf-8"))
            eml = (self.outbox / f"{json_path.stem}.eml").read_bytes()
            landed.append(Landed(json_path.stem, eml, record))
        landed.sort(key=lambda m: (m.record.get("receivedAt", ""), m.id))
        return landed

    def files(self) -> list[str]:
        return sorted(p.name for p in self.outbox.iterdir())

    def wait_for_messages(self, count: int, timeout: float = 10.0, exclude: set[str] | None = None
                          ) -> list[Landed]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(exclude)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    # -- clients -----------------------------------------------------------------------------------

    def connect(self, source: str | None = None, timeout: float = SOCKET_TIMEOUT) -> "RawSMTP":
        return RawSMTP(self.host, self.port, source=source, timeout=timeout)


# --------------------------------------------------------------------------------------------------
# A raw SMTP client


@dataclass
class Reply:
    code: int
    lines: list[str]  # text of each line, without the code and separator
    raw: bytes

    @property
    def enhanced(self) -> str | None:
        match = re.match(r"^([245]\.\d{1,3}\.\d{1,3})(?: |$)", self.lines[-1])
        return match.group(1) if match else None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self) -> str:
        return f"Reply({self.raw!r})"


REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$", re.S)


class RawSMTP:
    """A byte-exact SMTP client: send anything, read replies one at a time, check for EOF."""

    def __init__(self, host: str, port: int, source: str | None = None, timeout: float = SOCKET_TIMEOUT):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buffer = b""
        self.transcript: list[bytes] = []

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawSMTP":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append(b"C: " + data)
        self.sock.sendall(data)

    def cmd(self, line: str | bytes) -> "Reply":
        """Sends one command line (CRLF added) and reads its reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + CRLF)
        return self.reply()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def _line(self) -> bytes:
        while CRLF not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed mid-reply; pending {self.buffer!r}; "
                               f"transcript tail {self.transcript[-3:]!r}")
        line, self.buffer = self.buffer.split(CRLF, 1)
        return line

    def reply(self) -> Reply:
        raw = b""
        lines: list[str] = []
        code = None
        while True:
            line = self._line()
            raw += line + CRLF
            match = REPLY_LINE.match(line)
            assert match, f"malformed reply line {line!r}"
            line_code = int(match.group(1))
            assert code is None or code == line_code, f"reply code changed mid-reply: {raw!r}"
            code = line_code
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) == b" ":
                break
        self.transcript.append(b"S: " + raw)
        return Reply(code, lines, raw)

    def replies(self, count: int) -> list[Reply]:
        return [self.reply() for _ in range(count)]

    def expect(self, code: int, enhanced: str | None = None) -> Reply:
        got = self.reply()
        check(got, code, enhanced)
        return got

    def greeting(self) -> Reply:
        return self.expect(220)

    def ehlo(self, name: str = "client.example") -> Reply:
        reply = self.cmd(f"EHLO {name}")
        assert reply.code == 250, reply
        return reply

    def read_to_eof(self, timeout: float = 5.0) -> bytes:
        """Reads until the peer closes; fails if it does not close in `timeout` seconds."""
        self.sock.settimeout(timeout)
        data = self.buffer
        self.buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"connection still open after {timeout}s; unread {data!r}")
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def assert_closed(self, timeout: float = 5.0) -> None:
        rest = self.read_to_eof(timeout)
        assert rest == b"", f"unexpected bytes before close: {rest!r}"

    def assert_silent(self, seconds: float = 0.3) -> None:
        """Asserts that no further reply arrives for `seconds` (the connection stays open)."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            chunk = None
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)
        assert chunk is None and self.buffer == b"", f"unexpected data: {self.buffer + (chunk or b'')!r}"


def check(reply: Reply, code: int, enhanced: str | None = None) -> Reply:
    assert reply.code == code, f"expected {code} {enhanced or ''}, got {reply.raw!r}"
    if enhanced is not None:
        assert reply.enhanced == enhanced, f"expected enhanced code {enhanced}, got {reply.raw!r}"
    return reply


def accepted_id(reply: Reply) -> str:
    """The outbox id in `250 2.0.0 OK <id>`."""
    check(reply, 250, "2.0.0")
    match = re.match(r"^2\.0\.0 OK (\S+)$", reply.lines[-1])
    assert match, f"not a '250 2.0.0 OK <id>' reply: {reply.raw!r}"
    return match.group(1)


# --------------------------------------------------------------------------------------------------
# Wire-format models (independent of the gateway's code): what a conforming server stores.


def dot_stuff(content: bytes) -> bytes:
    """Client-side transparency (RFC 5321 §4.5.2) for CRLF text: a leading '.' on a line gets doubled."""
    assert content.endswith(CRLF)
    lines = content[:-2].split(CRLF)
    return CRLF.join(b"." + line if line.startswith(b".") else line for line in lines) + CRLF


def data_payload(content: bytes) -> bytes:
    """The bytes a client sends after 354 for CRLF-terminated `content`."""
    return dot_stuff(content) + b".\r\n"


def stored_from_wire(wire: bytes, bare_lf: str = "normalize") -> tuple[bytes, bytes]:
    """What a server must store for DATA `wire` bytes (after the 354), and the bytes left after the end.

    RFC 5321 model: lines are delimited by CRLF only; the first line that is exactly "." ends the data;
    a leading "." on any other line is removed; under `normalize`, a bare LF is stored as CRLF (it never
    delimits a line, so a "." after it is content). Bare CR and NUL are content."""
    pos = 0
    out = []
    while True:
        end = wire.find(CRLF, pos)
        assert end >= 0, "no <CRLF>.<CRLF> in wire data"
        line = wire[pos:end]
        pos = end + 2
        if line == b".":
            break
        if line.startswith(b"."):
            line = line[1:]
        if bare_lf == "normalize":
            line = line.replace(b"\n", CRLF)
        out.append(line + CRLF)
    return b"".join(out), wire[pos:]
