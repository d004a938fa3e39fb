"""A low open-file limit must mean clean refusals at connect, never a crash, a spin or a log flood,
on the SMTP listener and on the admin listener.

libdispatch aborts the process when it cannot create its own descriptors, so the gateway keeps a reserve:
it raises its soft limit to the hard one and clamps --max-connections to what fits; extra clients get 421.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from e2e_support import free_port, gateway_binary


def serve_with_open_file_limit(tmp_path, limit: int, port: int, *args: str) -> tuple[subprocess.Popen, Path]:
    """Starts `serve` under `ulimit -n limit` (soft and hard) with its log in a file; returns once `port`
    accepts connections (waiting at most 15 s)."""
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        gateway = subprocess.Popen(
            ["bash", "-c", f"ulimit -n {limit} && exec {gateway_binary()} serve --listen 127.0.0.1:{port} "
                           f"--outbox {tmp_path / 'outbox'} {' '.join(args)}"],
            stdout=stderr, stderr=stderr)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.3)
    return gateway, log


def test_a_tiny_open_file_limit_refuses_extra_clients_cleanly_and_recovers(tmp_path):
    port = free_port()
    gateway, log = serve_with_open_file_limit(tmp_path, 24, port)
    clients = []
    try:
        greetings = []
        for _ in range(40):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(client)
            greetings.append(client.recv(512)[:9])
        assert greetings.count(b"220 local") >= 1
        assert all(g in (b"220 local", b"421 4.7.0") for g in greetings), greetings
        cpu_before = int(open(f"/proc/{gateway.pid}/stat").read().split()[13])
        time.sleep(1.0)
        cpu_after = int(open(f"/proc/{gateway.pid}/stat").read().split()[13])
        assert cpu_after - cpu_before < 50, "the gateway spins"
        assert gateway.poll() is None, "the gateway died:\n" + log.read_text()
        text = log.read_text()
        assert "open-file limit allows fewer connections than configured" in text
        assert text.count("\n") < 200, "log flood"
        for client in clients:
            client.close()
        clients = []
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as fresh:
            fresh.settimeout(5)
            assert fresh.recv(512).startswith(b"220 ")
    finally:
        for client in clients:
            client.close()
        gateway.terminate()
        assert gateway.wait(timeout=35) == 0, log.read_text()[-2000:]


def test_admin_listener_out_of_descriptors_pauses_instead_of_spinning_and_recovers(tmp_path):
    """With the descriptors used up by held admin connections, `accept` fails with EMFILE
    and the pending connection stays in the backlog. The admin listener must pause (one warning per pause), not
    spin on the level-triggered source writing a warning per attempt, and serve again once connections close."""
    admin_port = free_port()
    # 26: libdispatch holds 6 or 7 descriptors of its own (eventfd, timerfds, epoll), varying between runs, so
    # with 28 the 16 admin connections allowed at once could fit beside them and accept would never fail.
    gateway, log = serve_with_open_file_limit(tmp_path, 26, free_port(), "--admin-listen", f"127.0.0.1:{admin_port}")
    clients = []

    def cpu_ticks() -> int:
        fields = open(f"/proc/{gateway.pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5))

    def warnings() -> int:
        return log.read_text(errors="replace").count("admin listener: accept failed")

    try:
        # Held admin connections use up the descriptors; the later ones wait in the backlog.
        for _ in range(30):
            try:
                clients.append(socket.create_connection(("127.0.0.1", admin_port), timeout=2))
            except OSError:
                break
        deadline = time.monotonic() + 5
        while warnings() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert warnings() >= 1, "accept never failed: the limit did not bite\n" + log.read_text()[-2000:]
        cpu_before, warnings_before = cpu_ticks(), warnings()
        time.sleep(2.0)
        cpu_spent, warned = cpu_ticks() - cpu_before, warnings() - warnings_before
        assert gateway.poll() is None, "the gateway died:\n" + log.read_text()[-2000:]
        # Before the fix: ~80 % CPU (160+ ticks in 2 s) and ~120,000 warnings a second.
        assert cpu_spent < 40, f"the gateway spins: {cpu_spent} ticks of CPU in 2 s"
        assert warned <= 25, f"{warned} 'accept failed' warnings in 2 s (one per 200 ms pause expected)"
        assert " level=warning " in next(line for line in log.read_text().splitlines()
                                        if "admin listener: accept failed" in line)
        for client in clients:
            client.close()
        clients = []
        # The closed connections free descriptors: the admin listener serves again.
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/healthz", timeout=5) as response:
                    status = response.status
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200, "the admin listener did not recover:\n" + log.read_text()[-2000:]
    finally:
        for client in clients:
            client.close()
        gateway.terminate()
        assert gateway.wait(timeout=35) == 0, log.read_text()[-2000:]
