#!/usr/bin/env python3
"""Peak memory of the gateway against the size of what it carries: figures, not a test (nothing is asserted).

- `convert` of a 7.1 MB message with one 5.25 MB base64 attachment, and of a small message (the process
  alone): peak RSS of each run (RUSAGE_CHILDREN of a fresh interpreter, so that child alone).
- `serve` delivering the same message through SMTP to the ACS emulator (https, loopback): the daemon's RSS
  idle, its VmHWM after a small message (TLS and first use of every path included) and after the big one.
- `serve` under load: 20 idle sessions (RSS each), then 20 connections x 200 messages of 1 KB, delivered to
  an outbox and to the emulator: the daemon's VmHWM.

Each peak is printed as the absolute figure and its ratio to the message, and as the growth above the
small-message baseline (what test_adversarial_sizes.py bounds).

    python3 Tests/Benchmarks/memory_peaks.py [--binary PATH] [--emulator PATH] [--skip-load]
"""
import argparse
import base64
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "EndToEnd"))
from acs_support import Emulator, make_certificates  # noqa: E402

MIB = 1024 * 1024
SMALL = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: small\r\n\r\nhello\r\n"

# Runs one child and reports its peak RSS: RUSAGE_CHILDREN of a fresh interpreter covers that child alone.
MEASURE = """
import resource, subprocess, sys
result = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(result.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def big_message(attachment: int = 5_250_000) -> bytes:
    """A message with one base64 attachment in 76-character CRLF lines, as mail clients write them."""
    encoded = base64.encodebytes(os.urandom(attachment)).replace(b"\n", b"\r\n")
    return (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--b\r\nContent-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + encoded + b"--b--\r\n")


def peak_rss(*command: str) -> int:
    output = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True,
                            timeout=300, check=True).stdout.split()
    if output[0] != "0":
        raise RuntimeError(f"{command} exited {output[0]}")
    return int(output[1])


def status_field(pid: int, name: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {name} for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(binary: str, args: list, env=None):
    port = free_port()
    process = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warning",
                                "--max-connections-per-client", "100", *args],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(512)
            time.sleep(0.2)
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the gateway did not start")


def send(port: int, body: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=120) as smtp:
        smtp.ehlo()
        smtp.mail("a@example.com")
        smtp.rcpt("b@example.org")
        return smtp.data(body)[0]


def load(port: int, clients: int, messages: int) -> int:
    """`clients` sessions at once, each sending `messages` messages of about 1 KB; returns how many got 250."""
    body = (b"From: bench@example.com\r\nTo: rcpt@example.net\r\nSubject: bench\r\n\r\n"
            + (b"x" * 78 + b"\r\n") * 12)
    accepted = []

    def client():
        count = 0
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=60) as smtp:
            smtp.ehlo()
            for _ in range(messages):
                smtp.mail("bench@example.com")
                smtp.rcpt("rcpt@example.net")
                count += smtp.data(body)[0] == 250
        accepted.append(count)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(accepted)


def line(label: str, peak: int, size: int, baseline: int = None) -> str:
    text = f"{label:<44} {peak / MIB:7.1f} MiB  {peak / size:5.2f}x"
    if baseline is not None:
        text += f"   +{(peak - baseline) / MIB:5.1f} MiB above baseline = {(peak - baseline) / size:4.2f}x"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.environ.get(
        "GATEWAY_BIN", str(ROOT / ".build" / "release" / "acs-smtp-gateway")))
    parser.add_argument("--emulator", default=None, help="acs-email-emulator (default: next to --binary)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("EMULATOR_BIN", args.emulator or str(Path(args.binary).parent / "acs-email-emulator"))

    with tempfile.TemporaryDirectory(prefix="memory-peaks-") as directory:
        work = Path(directory)
        message = big_message()
        size = len(message)
        (work / "big.eml").write_bytes(message)
        (work / "small.eml").write_bytes(SMALL)
        print(f"message: {size} octets ({size / MIB:.2f} MiB), one 5250000 octet attachment; ratios are to it\n")

        small = peak_rss(args.binary, "convert", str(work / "small.eml"))
        big = peak_rss(args.binary, "convert", str(work / "big.eml"))
        print(line("convert, small message (baseline)", small, size))
        print(line("convert, the message", big, size, small))

        certificates = make_certificates(Path(tempfile.mkdtemp(dir=work)))
        emulator = Emulator(work / "emulator", certificates)
        env = {**os.environ, "ACS_CONNECTION_STRING": emulator.connection_string}
        acs = ["--sender-address", "DoNotReply@example.com", "--acs-ca-file", str(certificates / "ca.pem")]
        try:
            gateway, port = start_gateway(args.binary, acs + ["--spool-directory", str(work / "spool1")], env)
            try:
                idle = status_field(gateway.pid, "VmRSS")
                assert send(port, SMALL) == 250
                baseline = status_field(gateway.pid, "VmHWM")
                assert send(port, message) == 250
                peak = status_field(gateway.pid, "VmHWM")
            finally:
                gateway.terminate()
                gateway.wait(timeout=30)
            print(line("serve to ACS, idle RSS", idle, size))
            print(line("serve to ACS, peak after a small message", baseline, size))
            print(line("serve to ACS, peak after the message", peak, size, baseline))

            if not args.skip_load:
                for name, extra, environment in (
                        ("outbox", ["--outbox", str(work / "outbox")], None),
                        ("ACS", acs + ["--spool-directory", str(work / "spool2")], env)):
                    gateway, port = start_gateway(args.binary, extra, environment)
                    try:
                        idle = status_field(gateway.pid, "VmRSS")
                        sessions = []
                        for _ in range(args.clients):
                            s = socket.create_connection(("127.0.0.1", port))
                            s.recv(512)
                            sessions.append(s)
                        time.sleep(0.5)
                        with_sessions = status_field(gateway.pid, "VmRSS")
                        for s in sessions:
                            s.close()
                        accepted = load(port, args.clients, args.messages)
                        peak = status_field(gateway.pid, "VmHWM")
                    finally:
                        gateway.terminate()
                        gateway.wait(timeout=60)
                    print(f"\nserve to {name}: idle RSS {idle / MIB:.1f} MiB; {args.clients} idle sessions "
                          f"{(with_sessions - idle) / args.clients / 1024:.1f} KiB each; "
                          f"{args.clients} x {args.messages} messages of 1 KB ({accepted} accepted): "
                          f"peak RSS {peak / MIB:.1f} MiB")
        finally:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
