#!/usr/bin/env python3
"""ACS delivery benchmark: 50 concurrent smtplib clients → gateway → acs-email-emulator (https, loopback).

Runs side by side: the emulator answering at once, and with 200 ms injected into every send (which
shows whether requests to ACS really run in parallel: serialized, 50 clients would crawl at 5 msg/s), in
`direct` mode; then, with 200 ms per send and 100 connections, `direct` against `queue` mode: the client's
reply latency (queue mode answers once the message is fsynced) and the rate at which messages reach the
emulator (queue mode is bounded by delivery.max_in_flight sends in flight, direct mode by the connections).
Prints messages/s, p50/p99 SMTP latency (end of DATA → reply) and the delivered rate. A figure, not a test;
it checks that every message was delivered exactly once before it prints a rate.

Side by side, the same 100 x 10 load against Postfix's smtp-sink (when installed: the `postfix` package),
which answers 250 and discards: the ceiling for intake on this machine and the client's own cost. The
summary compares queue mode's intake (fsynced before each 250) with it, the delivered rate with what
delivery.max_in_flight sends of 200 ms allow, and CPU per message (the server process's user + system time,
over the whole run: intake, spool, and for the gateway the delivery too).

Queue mode's intake alone, too: 20 connections x 200 messages, lock-step, ACS answering at once, beside
smtp-sink under the same load. Every 250 there waits for the fsync that covers its message, so this row
shows what group commit (concurrent messages sharing flushes) buys.

    python3 Tests/Benchmarks/acs_delivery_throughput.py [--clients 50] [--messages 20] [--queue-only]
"""
import argparse
import os
import signal
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
from acs_support import Emulator, make_certificates  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def load(port, clients, messages):
    latencies, errors, lock = [], [], threading.Lock()
    body = b"From: app@example.com\r\nTo: rcpt@example.net\r\nSubject: bench\r\n\r\n" + b"x" * 1000 + b"\r\n"

    def client():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
                smtp.ehlo()
                for _ in range(messages):
                    smtp.mail("app@example.com")
                    smtp.rcpt("rcpt@example.net")
                    started = time.perf_counter()
                    code, text = smtp.data(body)
                    elapsed = time.perf_counter() - started
                    with lock:
                        if code == 250:
                            latencies.append(elapsed)
                        else:
                            errors.append(f"{code} {text!r}")
        except Exception as error:
            with lock:
                errors.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sorted(latencies), errors


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    """The process's peak resident set so far (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_average():
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def percentile(values, fraction):
    return values[min(len(values) - 1, int(fraction * len(values)))] * 1000 if values else float("nan")


def run(name, work, certificates, binary, clients, messages, delay_ms, mode="direct", extra=()):
    emulator = Emulator(work / name.replace(" ", "-"), certificates)
    if delay_ms:
        emulator.faults({"delayMs": delay_ms})
    port = free_port()
    env = {**os.environ, "ACS_CONNECTION_STRING": emulator.connection_string}
    gateway = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--sender-address", "DoNotReply@example.com",
         "--acs-ca-file", str(certificates / "ca.pem"), "--log-level", "warning",
         "--max-connections-per-client", str(clients * 2), "--delivery-mode", mode,
         "--spool-directory", str(work / name.replace(" ", "-") / "spool"), *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        load_before = load_average()
        started = time.perf_counter()
        wall, latencies, errors = load(port, clients, messages)
        deadline = time.time() + 300
        while len(emulator.messages()) < len(latencies) and time.time() < deadline:
            time.sleep(0.05)
        delivered_in = time.perf_counter() - started
        recorded = len(emulator.messages())
        ids = [m["operationId"] for m in emulator.messages()]
        replays = emulator.admin("GET", "/admin/requests")["send"].get("replays", 0)
        if len(set(ids)) != len(ids) or replays:
            errors.append(f"not exactly once: {len(ids) - len(set(ids))} duplicate records, {replays} replays")
        cpu = cpu_seconds(gateway.pid)
        rss = peak_rss_mb(gateway.pid)
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
        emulator.stop()
    return {"name": name, "sent": len(latencies), "rate": len(latencies) / wall,
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "recorded": recorded,
            "delivered": recorded / delivered_in, "errors": errors, "expected": clients * messages,
            "cpu_ms": cpu * 1000 / max(1, len(latencies)), "load": load_before, "rss": rss}


def run_sink(clients, messages):
    """The same load against Postfix's smtp-sink (accepts and discards), or None when it is not installed."""
    sink = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None)
    if not sink:
        return None
    port = free_port()
    command = [sink, *(["-u", "nobody"] if os.geteuid() == 0 else []), f"127.0.0.1:{port}", "256"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        load_before = load_average()
        wall, latencies, errors = load(port, clients, messages)
        cpu = cpu_seconds(process.pid)
        rss = peak_rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return {"name": "postfix smtp-sink", "sent": len(latencies), "rate": len(latencies) / wall,
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "recorded": len(latencies),
            "delivered": float("nan"), "errors": errors, "expected": clients * messages,
            "cpu_ms": cpu * 1000 / max(1, len(latencies)), "load": load_before, "rss": rss}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--binary", default=os.environ.get(
        "GATEWAY_BIN", str(ROOT / ".build" / "release" / "acs-smtp-gateway")))
    parser.add_argument("--queue-only", action="store_true", help="only the queue-mode rows and their baselines")
    args = parser.parse_args()
    os.environ.setdefault("EMULATOR_BIN", str(Path(args.binary).parent / "acs-email-emulator"))
    work = Path(tempfile.mkdtemp(prefix="acs-bench-"))
    try:
        certificates = make_certificates(work)
        results = [] if args.queue_only else [
            run("instant", work, certificates, args.binary, args.clients, args.messages, 0),
            run("200 ms per send", work, certificates, args.binary, args.clients, args.messages, 200),
            run("direct, 100 conns", work, certificates, args.binary, 100, 10, 200)]
        intake = run("queue intake 20x200", work, certificates, args.binary, 20, 200, 0, mode="queue")
        queue = run("queue, 100 conns", work, certificates, args.binary, 100, 10, 200, mode="queue",
                    extra=("--max-in-flight", "64"))
        results += [intake, queue]
        sink_intake = run_sink(20, 200)
        sink = run_sink(100, 10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ncores: {os.cpu_count()}; {args.clients} concurrent smtplib clients x {args.messages} messages "
          f"(the 100-connection rows: 100 x 10, ACS at 200 ms; the intake row: 20 x 200, ACS at once), "
          f"gateway -> emulator over https")
    print(f"{'run':<20} {'sent':>6} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'recorded':>9} {'delivered/s':>12}"
          f" {'CPU ms/msg':>11} {'peak RSS MB':>12}  load 1/5/15 at start")
    sinks = [dict(s, name=f"smtp-sink {label}") for s, label in ((sink_intake, "20x200"), (sink, "100x10")) if s]
    for r in results + sinks:
        print(f"{r['name']:<20} {r['sent']:>6} {r['rate']:>8.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['recorded']:>9}"
              f" {r['delivered']:>12.1f} {r['cpu_ms']:>11.2f} {r['rss']:>12.1f}  {r['load']}")
        for error in r["errors"][:3]:
            print(f"  error: {error}")
    allowed = 64 / 0.2
    print(f"queue mode: delivered {queue['delivered']:.1f}/s = {queue['delivered'] / allowed:.2f}x of the "
          f"{allowed:.0f}/s that 64 sends in flight at 200 ms allow; client p99 {queue['p99']:.1f} ms")
    for mine, base, label in ((intake, sink_intake, "20 x 200, ACS at once"), (queue, sink, "100 x 10")):
        if not base:
            print("smtp-sink not installed (Debian package postfix): no baseline")
            break
        cpu_ratio = f"{mine['cpu_ms'] / base['cpu_ms']:.1f}x" if base["cpu_ms"] else "n/a (smtp-sink used < 1 tick)"
        print(f"queue mode vs smtp-sink ({label}): intake {mine['rate'] / base['rate']:.2f}x, "
              f"CPU per message {cpu_ratio}")
    return 0 if all(r["sent"] == r["recorded"] == r["expected"] and not r["errors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
