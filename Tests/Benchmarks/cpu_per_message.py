#!/usr/bin/env python3
"""CPU per message, beside Postfix's smtp-sink: the performance table of README's "Performance".

The same load for every server, in one run: `--clients` smtplib sessions, each sending `--messages`
messages of about 1 KB in lock-step over one reused session. Servers:

  - Postfix's smtp-sink (SMTP only, discards: the floor);
  - the gateway in `direct` mode, sending each message to the ACS emulator over https, which answers at
    once (the gateway's background poll of each operation included, as in production);
  - the gateway in `queue` mode: 250 once the message is fsynced in the spool, then delivered to the
    emulator; its CPU is counted until the last message has reached the emulator;
  - the gateway writing to an outbox (no ACS).

For each: messages/s, the server process's CPU per message (user + system, from /proc, over the load
and its deliveries), p50/p99 reply latency (end of DATA to the reply), peak RSS (VmHWM), and the ratio
to smtp-sink's figure. The emulator logs warnings only (a line per request costs it 5%), and its own CPU
per message is printed too, to show whether it limits the run. Then the gateway's cold start: exec to
greeting, and exec to the first message accepted.

A figure, not a test: it checks that every message was accepted, and that every message reached the
emulator exactly once (distinct operation ids, no replays), before it prints a rate.

    python3 Tests/Benchmarks/cpu_per_message.py [--clients 20] [--messages 200] [--binary PATH]
"""
import argparse
import os
import shutil
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from acs_support import Emulator, make_certificates  # noqa: E402
from smtp_throughput import free_port, percentile, run_threads, terminate  # noqa: E402
from tls_throughput import cpu_seconds  # noqa: E402


def wait_for_greeting(port, timeout=30):
    """Seconds until a connection to `port` yields the first line of a greeting."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.001)
    raise RuntimeError(f"no greeting on {port}")


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(port, clients, messages):
    body = "x" * 1000
    latencies, errors = [], []
    lock = threading.Lock()

    def client(number):
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=60) as smtp:
                for index in range(messages):
                    text = (f"From: bench@example.com\r\nTo: rcpt@example.net\r\nSubject: bench {number}-{index}\r\n"
                            f"Message-ID: <{number}.{index}@bench.example>\r\n\r\n{body}\r\n")
                    started = time.perf_counter()
                    smtp.sendmail("bench@example.com", ["rcpt@example.net"], text)
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed * 1000)
        except Exception as error:  # reported with the figures
            with lock:
                errors.append(repr(error))

    wall = run_threads(clients, client)
    return wall, sorted(latencies), errors


def accepted_once(emulator):
    """Messages the emulator accepted, each counted once (a replay repeats an accepted Operation-Id)."""
    sends = emulator.admin("GET", "/admin/requests")["send"]
    return sends["statuses"].get("202", 0) - sends.get("replays", 0)


def measure(name, command, port, args, env=None, emulator=None, outbox=None):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    replays = 0
    try:
        wait_for_greeting(port)
        expected = args.clients * args.messages
        cpu_before = cpu_seconds(process.pid)
        emulator_before = cpu_seconds(emulator.proc.pid) if emulator else 0.0
        wall, latencies, errors = load(port, args.clients, args.messages)
        if emulator:
            # The count, not the records: listing every record while waiting would be the emulator's main work.
            deadline = time.time() + 300
            while accepted_once(emulator) < len(latencies) and time.time() < deadline:
                time.sleep(0.05)
        cpu = cpu_seconds(process.pid) - cpu_before
        emulator_cpu = cpu_seconds(emulator.proc.pid) - emulator_before if emulator else None
        if emulator:
            records = emulator.messages()
            ids = [m["operationId"] for m in records]
            # A replay is a send whose Operation-Id the emulator had already accepted, answered with the same
            # operation: an idempotent resend (libcurl resends requests of an HTTP/2 connection that died before
            # their answers arrived), not a second message. Counted, not an error; a second record would be.
            replays = emulator.admin("GET", "/admin/requests")["send"].get("replays", 0)
            if len(ids) != expected or len(set(ids)) != len(ids):
                errors.append(f"not exactly once: {len(ids)} records, {len(set(ids))} distinct ids")
        if outbox:
            stored = len([n for n in os.listdir(outbox) if n.endswith(".eml")])
            if stored != expected:
                errors.append(f"{stored} of {expected} messages in the outbox")
        rss = peak_rss_mib(process.pid)
    finally:
        terminate(process, timeout=60)
    sent = len(latencies)
    if sent != expected:
        errors.append(f"{sent} of {expected} messages accepted")
    return {"name": name, "sent": sent, "rate": sent / wall, "cpu": 1000 * cpu / max(sent, 1),
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "rss": rss,
            "emulator": None if emulator_cpu is None else 1000 * emulator_cpu / max(sent, 1), "errors": errors,
            "replays": replays if emulator else None}


def gateway_command(binary, port, *extra):
    return [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warning",
            "--max-connections-per-client", "1000", *extra]


def cold_start(binary, work):
    """Exec to greeting, and exec to the first message accepted, of a gateway writing to an outbox."""
    port = free_port()
    outbox = work / "cold-outbox"
    outbox.mkdir()
    started = time.perf_counter()
    process = subprocess.Popen(gateway_command(binary, port, "--outbox", str(outbox)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        greeting = time.perf_counter() - started
        greeting = wait_for_greeting(port) + greeting
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=30) as smtp:
            smtp.sendmail("bench@example.com", ["rcpt@example.net"], "Subject: cold\r\n\r\nstart\r\n")
        first = time.perf_counter() - started
    finally:
        terminate(process, timeout=60)
    return greeting * 1000, first * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--binary", default=os.environ.get(
        "GATEWAY_BIN", str(ROOT / ".build" / "release" / "acs-smtp-gateway")))
    args = parser.parse_args()
    os.environ.setdefault("EMULATOR_BIN", str(Path(args.binary).parent / "acs-email-emulator"))
    sink = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None)
    if not sink:
        print("smtp-sink is missing (Debian package postfix): there is no baseline to compare with", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="acs-cpu-bench-"))
    results = []
    try:
        port = free_port()
        command = [sink, f"127.0.0.1:{port}", "256"]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "nobody"]
        results.append(measure("postfix smtp-sink (the floor)", command, port, args))

        certificates = make_certificates(work)
        for mode in ("direct", "queue"):
            emulator = Emulator(work / f"emulator-{mode}", certificates, "--log-level", "warning")
            try:
                port = free_port()
                env = {**os.environ, "ACS_CONNECTION_STRING": emulator.connection_string}
                results.append(measure(
                    f"gateway {mode} -> ACS emulator",
                    gateway_command(args.binary, port, "--sender-address", "DoNotReply@example.com",
                                    "--acs-ca-file", str(certificates / "ca.pem"), "--delivery-mode", mode,
                                    "--spool-directory", str(work / f"spool-{mode}")),
                    port, args, env=env, emulator=emulator))
            finally:
                emulator.stop()

        outbox = work / "outbox"
        outbox.mkdir()
        port = free_port()
        results.append(measure("gateway -> outbox", gateway_command(args.binary, port, "--outbox", str(outbox)),
                               port, args, outbox=outbox))
        greeting_ms, first_ms = cold_start(args.binary, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = results[0]
    print(f"\ncores: {os.cpu_count()}; load average at the end: {os.getloadavg()[0]:.1f}; "
          f"{args.clients} connections x {args.messages} messages of ~1.1 KB, lock-step, sessions reused")
    print(f"{'server':<32} {'msg/s':>7} {'x sink':>7} {'CPU ms/msg':>11} {'x sink':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'+p99 ms':>8} {'peak RSS':>9} {'emulator CPU ms/msg':>20}")
    for r in results:
        emulator = f"{r['emulator']:.2f}" if r["emulator"] is not None else "-"
        print(f"{r['name']:<32} {r['rate']:>7.0f} {r['rate'] / base['rate']:>7.2f} {r['cpu']:>11.3f} "
              f"{r['cpu'] / base['cpu'] if base['cpu'] else float('nan'):>7.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} "
              f"{r['p99'] - base['p99']:>8.1f} {r['rss']:>7.1f} MiB {emulator:>20}")
        if r["replays"]:
            print(f"  {r['replays']} idempotent resends of an already accepted Operation-Id (no second message)")
        for error in r["errors"][:3]:
            print(f"  error: {error}")
    print(f"cold start (outbox): exec to greeting {greeting_ms:.0f} ms, to the first message accepted {first_ms:.0f} ms")
    return 0 if not any(r["errors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
