"""Running out of file descriptors must neither spin nor flood the log, and service resumes (review F4)."""

from __future__ import annotations

import socket
import subprocess
import time

from e2e_support import free_port, gateway_binary


def test_out_of_descriptors_pauses_accepting_then_recovers(tmp_path):
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
        for _ in range(40):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        time.sleep(1.5)
        cpu_ticks_before = int(open(f"/proc/{gateway.pid}/stat").read().split()[13])
        time.sleep(1.0)
        cpu_ticks_after = int(open(f"/proc/{gateway.pid}/stat").read().split()[13])
        text = log.read_text()
        episodes = text.count("out of file descriptors")
        assert 1 <= episodes <= 40, f"{episodes} log lines about descriptors"
        assert cpu_ticks_after - cpu_ticks_before < 50, "the listener spins while out of descriptors"
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
        assert gateway.wait(timeout=35) == 0
