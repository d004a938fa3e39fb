#!/usr/bin/env python3
"""SMTP intake benchmark: N concurrent smtplib clients x M small messages.

Runs the same load against the gateway (writing to a temporary outbox, under /usr/bin/time -v
for peak RSS) and, as a baseline side by side, against Postfix's smtp-sink when it is installed.
Prints messages/s, latency percentiles per message and peak RSS. A figure, not a test: it asserts
only that every message was accepted.

    python3 Tests/Benchmarks/smtp_throughput.py [--clients 20] [--messages 100] [--binary PATH]
"""
import argparse
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(512)
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def run_load(port, clients, messages, prepare=None):
    """`clients` threads, each sending `messages` over one session; `prepare(smtp)` runs first (STARTTLS, login)."""
    body = "x" * 1000
    latencies = []
    errors = []
    lock = threading.Lock()

    def client(number):
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=30) as smtp:
                if prepare is not None:
                    prepare(smtp)
                for index in range(messages):
                    message = EmailMessage()
                    message["From"] = "bench@example.com"
                    message["To"] = "rcpt@example.net"
                    message["Subject"] = f"bench {number}-{index}"
                    message.set_content(body)
                    started = time.perf_counter()
                    smtp.send_message(message)
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
        except Exception as error:  # reported below
            with lock:
                errors.append(repr(error))

    wall = run_threads(clients, client)
    return wall, sorted(latencies), errors


def run_threads(count, target):
    """Runs `target(n)` for n in 0..<count on as many threads at once; the wall-clock seconds it took."""
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def terminate(process, timeout=30):
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else float("nan")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return [int(p) for p in file.read().split()]
    except OSError:
        return []


def peak_rss_kib(time_output):
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_output)
    return int(match.group(1)) if match else None


def measure(name, command, port, clients, messages, env=None):
    stderr = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        wait_for_port(port)
        wall, latencies, errors = run_load(port, clients, messages)
    finally:
        # Signal the measured server, not /usr/bin/time, which must live to print its report.
        for child in children(process.pid) or [process.pid]:
            os.kill(child, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    stderr.seek(0)
    output = stderr.read().decode(errors="replace")
    total = clients * messages
    return {
        "name": name,
        "sent": len(latencies),
        "total": total,
        "rate": len(latencies) / wall if wall else 0,
        "p50": percentile(latencies, 0.50) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "rss": peak_rss_kib(output),
        "errors": errors,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--binary", default=os.environ.get(
        "GATEWAY_BIN", os.path.join(ROOT, ".build", "release", "acs-smtp-gateway")))
    args = parser.parse_args()

    results = []
    outbox = tempfile.mkdtemp(prefix="bench-outbox-")
    port = free_port()
    results.append(measure(
        "acs-smtp-gateway -> outbox",
        ["/usr/bin/time", "-v", args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--outbox", outbox,
         "--log-level", "warning"],
        port, args.clients, args.messages))
    landed = len([n for n in os.listdir(outbox) if n.endswith(".eml")])
    shutil.rmtree(outbox, ignore_errors=True)

    # The same with what production runs with: an audit line per message (info) and Prometheus metrics.
    outbox = tempfile.mkdtemp(prefix="bench-outbox-")
    port = free_port()
    results.append(measure(
        "  + audit log (info) + metrics",
        ["/usr/bin/time", "-v", args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--outbox", outbox,
         "--log-level", "info", "--admin-listen", f"127.0.0.1:{free_port()}"],
        port, args.clients, args.messages))
    landed_observed = len([n for n in os.listdir(outbox) if n.endswith(".eml")])
    shutil.rmtree(outbox, ignore_errors=True)

    sink = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None)
    if sink:
        port = free_port()
        command = ["/usr/bin/time", "-v", sink, f"127.0.0.1:{port}", "256"]
        if os.geteuid() == 0:
            command[3:3] = ["-u", "nobody"]
        results.append(measure("postfix smtp-sink (baseline, discards)", command, port, args.clients, args.messages))

    print(f"\n{args.clients} concurrent smtplib clients x {args.messages} messages of ~1.2 KB")
    print(f"{'server':<40} {'msgs':>6} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS':>10}")
    for r in results:
        rss = f"{r['rss'] / 1024:.1f} MiB" if r["rss"] else "?"
        print(f"{r['name']:<40} {r['sent']:>6} {r['rate']:>9.1f} {r['p50']:>8.2f} {r['p99']:>8.2f} {rss:>10}")
        for error in r["errors"][:5]:
            print(f"  error: {error}")
    print(f"messages in the outbox: {landed}")
    gateway, observed = results[0], results[1]
    if observed["sent"] != observed["total"] or landed_observed != observed["total"]:
        print("FAILED: not every message was accepted and stored with metrics on", file=sys.stderr)
        return 1
    if gateway["sent"] != gateway["total"] or landed != gateway["total"]:
        print("FAILED: not every message was accepted and stored", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
