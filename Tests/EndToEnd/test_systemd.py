"""The real binary under systemd's protocols, without systemd: sd_notify(3) datagrams captured on a socket
of our own, and socket activation (sd_listen_fds(3)) done exactly the way systemd does it. Also
`systemd-analyze verify` and `systemd-analyze security` on the unit files, when the tool is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from e2e_support import REPO, Gateway, RawSMTP, accepted_id, data_payload, free_port

UNITS = REPO / "systemd"
MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: systemd\r\n\r\nhello\r\n"


# --------------------------------------------------------------------------------------------------
# sd_notify


class NotifySocket:
    """A datagram socket playing systemd's `$NOTIFY_SOCKET`, drained by a thread (the kernel queues only
    a few datagrams per socket, net.unix.max_dgram_qlen, and the watchdog pings every 100 ms)."""

    def __init__(self, abstract: bool):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir = None
        if abstract:
            name = f"acs-smtp-gateway-e2e-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="sdnotify-")  # short: sun_path holds 108 bytes
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode("utf-8")))

    def texts(self) -> list[str]:
        with self._lock:
            return [text for _, text in self.messages]

    def wait_for(self, predicate, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = self.texts()
            if any(predicate(text) for text in texts):
                return texts
            time.sleep(0.02)
        raise AssertionError(f"no matching notification in {timeout}s; got {self.texts()!r}")

    def close(self) -> None:
        time.sleep(0.2)  # let the drain thread take the last datagrams
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request):
    sock = NotifySocket(abstract=request.param == "abstract")
    yield sock
    sock.close()


def send_one(gw: Gateway) -> str:
    with gw.connect() as client:
        client.greeting()
        client.ehlo()
        client.cmd("MAIL FROM:<a@example.com>")
        client.cmd("RCPT TO:<b@example.net>")
        client.cmd("DATA")
        client.send(data_payload(MESSAGE))
        message_id = accepted_id(client.reply())
        client.cmd("QUIT")
    return message_id


def test_notify_ready_status_watchdog_stopping_in_order(start_gateway, notify_socket):
    gw = start_gateway(check_exit=False, env={"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "200000"})
    notify_socket.wait_for(lambda text: text.startswith("READY=1"))
    send_one(gw)
    time.sleep(0.6)  # several watchdog periods (100 ms each)
    gw.signal(signal.SIGTERM)
    assert gw.wait_exit(10) == 0, gw.stderr()
    texts = notify_socket.wait_for(lambda text: text.startswith("STATUS=Stopped"))

    others = [text for text in texts if text != "WATCHDOG=1"]
    assert others[0] == f"READY=1\nSTATUS=Listening on {gw.listen}; connections: 0 open, 0 served, 0 refused; " \
                        "messages: 0 accepted, 0 deferred, 0 rejected", texts
    stopping = [index for index, text in enumerate(others) if text.startswith("STOPPING=1\n")]
    assert len(stopping) == 1, texts
    assert re.fullmatch(r"STOPPING=1\nSTATUS=Stopping: 0 connections still open, finishing their transactions; "
                        r"connections: 0 open, \d+ served, 0 refused; messages: 1 accepted, 0 deferred, 0 rejected",
                        others[stopping[0]]), others[stopping[0]]
    # "served" also counts the fixture's readiness probe.
    assert re.fullmatch(r"STATUS=Stopped: connections: 0 open, \d+ served, 0 refused; "
                        r"messages: 1 accepted, 0 deferred, 0 rejected", others[-1]), texts
    assert stopping[0] < len(others) - 1
    # Every datagram is READY/STATUS/WATCHDOG/STOPPING, nothing else.
    for text in texts:
        for line in text.split("\n"):
            assert line.split("=", 1)[0] in {"READY", "STATUS", "WATCHDOG", "STOPPING"}, text
    # WATCHDOG_USEC=200000: a ping every 100 ms from start to exit, so at least five in the 0.6 s pause.
    assert texts.count("WATCHDOG=1") >= 5, texts
    assert "systemd watchdog enabled" in gw.stderr()


def test_status_is_updated_while_running(start_gateway, notify_socket):
    gw = start_gateway(env={"NOTIFY_SOCKET": notify_socket.address})
    notify_socket.wait_for(lambda text: text.startswith("READY=1"))
    send_one(gw)
    # The status line is refreshed every 5 s when it changed.
    texts = notify_socket.wait_for(lambda text: text.startswith("STATUS=Listening") and "1 accepted" in text,
                                   timeout=8)
    assert "WATCHDOG=1" not in texts  # no WATCHDOG_USEC, no pings


def test_watchdog_for_another_process_is_not_pinged(start_gateway, notify_socket):
    start_gateway(env={"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "200000",
                       "WATCHDOG_PID": str(os.getpid())})
    notify_socket.wait_for(lambda text: text.startswith("READY=1"))
    time.sleep(0.5)
    assert "WATCHDOG=1" not in notify_socket.texts()


def test_without_notify_socket_nothing_changes(start_gateway):
    gw = start_gateway(env={"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "200000"})
    send_one(gw)
    assert "watchdog" not in gw.stderr()


# --------------------------------------------------------------------------------------------------
# Socket activation


class ActivatedGateway(Gateway):
    """The gateway started as systemd starts a socket-activated service: the listening socket as
    descriptor 3, LISTEN_FDS=1, LISTEN_FDNAMES=smtp and LISTEN_PID set to the service's own pid (here by
    `sh`, whose `$$` stays the pid across `exec`). `--listen` names another port, which must stay unbound.
    """

    def __init__(self, workdir: Path, listener: socket.socket, listen_pid: str = "$$", names: str = "smtp",
                 name: str = "activated"):
        super().__init__(workdir, port=listener.getsockname()[1], name=name,
                         env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": names})
        self.unused_port = free_port()
        fd = listener.fileno()

        def put_listener_at_fd_3():
            # In the child, between fork and exec: descriptor 3 without FD_CLOEXEC, as systemd leaves it.
            if fd == 3:
                os.set_inheritable(3, True)
            else:
                os.dup2(fd, 3)

        # Python opens its own descriptors close-on-exec (PEP 446), so keeping the rest open leaks nothing;
        # close_fds=True would close descriptor 3 after preexec_fn.
        self.popen_options = {"close_fds": False, "preexec_fn": put_listener_at_fd_3}
        self.listen_pid = listen_pid

    @property
    def command(self) -> list[str]:
        return ["sh", "-c", f'LISTEN_PID={self.listen_pid} exec "$0" "$@"', str(self.binary), "serve",
                "--listen", f"127.0.0.1:{self.unused_port}", "--outbox", str(self.outbox), "--log-level", "info"]


def listening_socket() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


def port_is_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def activated(request, tmp_path, gateway_bin):
    started: list[Gateway] = []
    request.node._e2e_gateways = started
    listeners: list[socket.socket] = []

    def start(**options) -> ActivatedGateway:
        listener = listening_socket()
        listeners.append(listener)
        gw = ActivatedGateway(tmp_path, listener, name=f"activated{len(started)}", **options)
        started.append(gw)
        return gw.start()

    yield start
    problems = []
    for gw in started:
        status = gw.stop(5)
        if status != 0:
            problems.append(f"activated gateway did not exit 0 after SIGTERM ({status})\n{gw.stderr()[-4000:]}")
    for listener in listeners:
        listener.close()
    assert not problems, "\n".join(problems)


def test_socket_activation_serves_the_inherited_socket(activated):
    gw = activated()
    message_id = send_one(gw)
    assert [m.id for m in gw.wait_for_messages(1)] == [message_id]
    log = gw.stderr()
    assert re.search(r'msg="listening on a socket passed by systemd" address=127\.0\.0\.1:%d fd=3 fd_name=smtp'
                     % gw.port, log), log
    assert "the --listen addresses are not bound" in log
    assert not port_is_open(gw.unused_port), "--listen was bound although a socket was inherited"
    # The descriptor is close-on-exec in the gateway now (sd_listen_fds(3) sets FD_CLOEXEC).
    flags = Path(f"/proc/{gw.pid}/fdinfo/3").read_text()
    assert int(re.search(r"^flags:\s+(\d+)", flags, re.M).group(1), 8) & 0o2000000, flags


def test_socket_activation_for_another_pid_binds_listen(tmp_path):
    listener = listening_socket()
    try:
        gw = ActivatedGateway(tmp_path, listener, listen_pid=str(os.getpid()))
        gw.port = gw.unused_port  # the gateway must listen there instead
        gw.start()
        try:
            send_one(gw)
            assert re.search(r'no socket activation; binding the --listen addresses" reason="LISTEN_PID=%d is '
                             r'another process' % os.getpid(), gw.stderr()), gw.stderr()
        finally:
            assert gw.stop(5) == 0, gw.stderr()
    finally:
        listener.close()


def test_without_listen_fds_binds_listen(start_gateway):
    gw = start_gateway(env={"LISTEN_PID": "1"})
    send_one(gw)
    assert 'no socket activation; binding the --listen addresses" reason="LISTEN_FDS is not set"' in gw.stderr()


def test_inherited_socket_that_is_not_listening_stops_the_gateway(tmp_path):
    unbound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    unbound.bind(("127.0.0.1", 0))  # bound, never listen(): as with a .socket unit that says Accept=yes
    try:
        gw = ActivatedGateway(tmp_path, unbound)
        with pytest.raises(RuntimeError, match="exited with 1"):
            gw.start(ready_timeout=10)
        assert "inherited descriptor 3 (smtp) is not listening: the .socket unit needs Accept=no" in gw.stderr()
        gw.stop()
    finally:
        unbound.close()


# --------------------------------------------------------------------------------------------------
# The unit files


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
UNIT_NAMES = ("acs-smtp-gateway.socket", "acs-smtp-gateway-sendmail.socket", "acs-smtp-gateway.service")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)")


def offline_root(tmp_path: Path) -> Path:
    """A file system root for `systemd-analyze verify --root`: the host's own system units (sysinit.target
    and friends that every service depends on), our three units, and executables at the ExecStart= and
    ExecReload= paths (verify checks that they exist and are executable; it never runs them). /bin is a
    link to usr/bin as on Debian 12 (merged /usr); /bin/kill is procps's, which the .deb depends on."""
    root = tmp_path / "root"
    system_units = Path("/usr/lib/systemd/system")
    if not system_units.is_dir():
        pytest.skip("no /usr/lib/systemd/system to verify against")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNIT_NAMES:
        shutil.copy(UNITS / unit, root / "etc/systemd/system" / unit)
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    for name in ("acs-smtp-gateway", "kill"):
        binary = root / "usr/bin" / name
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(0o755)
    return root


@needs_systemd_analyze
def test_systemd_analyze_verify_passes(tmp_path):
    root = offline_root(tmp_path)
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", f"--root={root}", "--man=no", *UNIT_NAMES],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", \
        f"status {result.returncode}\n{result.stdout}\n{result.stderr}"


@needs_systemd_analyze
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a typo in a directive makes verify complain."""
    root = offline_root(tmp_path)
    unit = root / "etc/systemd/system/acs-smtp-gateway.service"
    unit.write_text(unit.read_text().replace("ExecStart=/usr/bin/", "ExecStart=/usr/sbin/"))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", f"--root={root}", "--man=no", "acs-smtp-gateway.service"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "not executable" in result.stderr, result


@needs_systemd_analyze
@pytest.mark.parametrize("change, complaint", [
    # The daemon accepts connections itself: one service for all of them.
    (("Accept=no", "Accept=yes"), "Explicit service configuration for accepting socket units not supported"),
    (("Service=acs-smtp-gateway.service", "Service=acs-smtp-gateway-sendmail.service"), "not loaded"),
])
def test_systemd_analyze_verify_catches_a_broken_sendmail_socket_unit(tmp_path, change, complaint):
    root = offline_root(tmp_path)
    unit = root / "etc/systemd/system/acs-smtp-gateway-sendmail.socket"
    text = unit.read_text()
    assert f"\n{change[0]}\n" in text
    unit.write_text(text.replace(f"\n{change[0]}\n", f"\n{change[1]}\n"))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", f"--root={root}", "--man=no", unit.name],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and complaint in result.stderr, result


def directives(unit: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment in a unit file of systemd/, in order, comments left out."""
    entries, section = [], ""
    for line in (UNITS / unit).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key, value))
    return entries


def values(unit: str, section: str, key: str) -> list[str]:
    return [value for found_section, found_key, value in directives(unit) if (found_section, found_key) == (section, key)]


def test_sendmail_socket_unit_is_the_one_the_daemon_and_the_command_expect():
    unit = "acs-smtp-gateway-sendmail.socket"
    assert {key: values(unit, "Socket", key) for key in
            ("ListenStream", "FileDescriptorName", "SocketMode", "DirectoryMode", "Accept", "Service", "RemoveOnStop")} == {
        # The sendmail command's default socket path.
        "ListenStream": ["/run/acs-smtp-gateway/submit.sock"],
        # The name the daemon tells it apart by (LISTEN_FDNAMES=smtp:sendmail, in either order).
        "FileDescriptorName": ["sendmail"],
        "SocketMode": ["0666"],  # every local user may submit; the daemon learns who from SO_PEERCRED
        "DirectoryMode": ["0755"],
        "Accept": ["no"],
        "Service": ["acs-smtp-gateway.service"],
        "RemoveOnStop": ["yes"],
    }
    assert values(unit, "Install", "WantedBy") == ["sockets.target"]
    # sun_path holds 108 bytes with the terminating NUL.
    assert len(values(unit, "Socket", "ListenStream")[0].encode()) < 108


def test_service_runtime_directory_and_the_sendmail_socket_unit_stay_apart():
    service = "acs-smtp-gateway.service"
    path = Path(values("acs-smtp-gateway-sendmail.socket", "Socket", "ListenStream")[0])
    # The service's runtime directory, for a socket the daemon binds itself: other users can reach into it.
    assert values(service, "Service", "RuntimeDirectory") == ["acs-smtp-gateway/daemon"]
    assert values(service, "Service", "RuntimeDirectoryMode") == ["0755"]
    # Not preserved: with DynamicUser= a preserved runtime directory moves under /run/private/, root's alone.
    assert values(service, "Service", "DynamicUser") == ["yes"]
    assert values(service, "Service", "RuntimeDirectoryPreserve") == []
    # The socket unit's socket is outside it: systemd deletes the runtime directory, and anything in it,
    # whenever the service stops or restarts, while the socket unit keeps listening.
    runtime = Path("/run") / values(service, "Service", "RuntimeDirectory")[0]
    assert runtime not in path.parents and path.parent in runtime.parents


def test_service_keeps_the_sendmail_socket_optional_and_its_peers_visible():
    service = "acs-smtp-gateway.service"
    # Optional: nothing in the service pulls the sendmail socket in (Sockets= would imply Wants=).
    assert values(service, "Service", "Sockets") == []
    dependencies = [value for section, key, value in directives(service)
                    if key in {"Requires", "Wants", "BindsTo", "Also", "Upholds"}]
    assert not any("sendmail" in value for value in dependencies), dependencies
    # The peer's uid must be the real one (SO_PEERCRED): no private user namespace, AF_UNIX allowed.
    assert values(service, "Service", "PrivateUsers") == []
    assert "AF_UNIX" in " ".join(values(service, "Service", "RestrictAddressFamilies")).split()
    # The SMTP socket unit stays IP only; its UNIX sibling is the sendmail unit.
    assert all(not value.startswith("/") for value in values("acs-smtp-gateway.socket", "Socket", "ListenStream"))
    assert values("acs-smtp-gateway.socket", "Socket", "FileDescriptorName") == ["smtp"]


@needs_systemd_analyze
def test_systemd_analyze_security_rates_the_service_ok_or_better():
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager",
                             str(UNITS / "acs-smtp-gateway.service")],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip(f"this systemd-analyze has no offline security review: {result.stderr.strip()}")
    match = re.search(r"Overall exposure level for acs-smtp-gateway\.service: (\d+\.\d) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    score, rating = float(match.group(1)), match.group(2)
    print(f"systemd-analyze security: {score} {rating}")
    assert rating in {"PERFECT", "SAFE", "OK"} and score <= 2.0, result.stdout


# --------------------------------------------------------------------------------------------------
# MemoryDenyWriteExecute=yes in the unit


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def test_gateway_runs_when_memory_can_never_be_writable_and_executable(tmp_path):
    """The unit sets MemoryDenyWriteExecute=yes (a seccomp filter). Linux ≥ 6.3 has the same rule as a
    process attribute, prctl(PR_SET_MDWE), kept across execve: the gateway must start and serve under it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def deny_write_execute():
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            os._exit(97)  # reported below as a skip

    probe = subprocess.run(["true"], preexec_fn=deny_write_execute)
    if probe.returncode == 97:
        pytest.skip("this kernel has no prctl(PR_SET_MDWE) (Linux < 6.3)")
    # The rule is in force after execve: a writable and executable mapping is refused.
    wx = subprocess.run([sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, "
                         "prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"],
                        preexec_fn=deny_write_execute, capture_output=True, text=True)
    assert wx.returncode != 0 and "PermissionError" in wx.stderr, wx
    gw = Gateway(tmp_path, name="mdwe")
    gw.popen_options = {"preexec_fn": deny_write_execute}
    gw.start()
    try:
        send_one(gw)
        assert len(gw.wait_for_messages(1)) == 1
    finally:
        assert gw.stop(5) == 0, gw.stderr()
