"""A low open-file limit must mean clean refusals at connect, never a crash, a spin or a log flood (review F4).

libdispatch aborts the process when it cannot create its own descriptors, so the gateway keeps a reserve:
it raises its soft limit to the hard one and clamps --max-connections to what fits; extra clients get 421.
"""

from __future__ import annotations

import socket
import subprocess
import time

from e2e_support import free_port, gateway_binary


def test_a_tiny_open_file_limit_refuses_extra_clients_cleanly_and_recovers(tmp_path):
    port = free_port()
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        gateway = subprocess.Popen(
            ["bash", "-c", f"ulimit -n 24 && exec {gateway_binary()} serve --listen 127.0.0.1:{port} "
                           f"--outbox {tmp_path / 'outbox'}"],
            stdout=stderr, stderr=stderr)
    clients = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.3)
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
