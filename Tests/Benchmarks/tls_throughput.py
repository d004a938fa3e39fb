#!/usr/bin/env python3
"""TLS benchmark: STARTTLS session throughput and handshake cost, beside plaintext.

Starts one gateway (writing to a temporary outbox) with a plain listener, a STARTTLS listener and an
implicit-TLS listener (a throw-away EC certificate made with the openssl CLI), then measures:

- session throughput: N concurrent smtplib clients, each sending M small messages over one session, in
  plaintext, after STARTTLS, and after STARTTLS + AUTH PLAIN (one yescrypt check per session);
- handshake cost: K sessions one after another that only connect, EHLO and QUIT, in plaintext, with
  STARTTLS and with implicit TLS: per-session latency and the gateway's CPU time per session
  (from /proc/PID/stat), so the difference is what a TLS handshake costs the server.

A figure, not a test: it asserts only that every message was accepted.

    python3 Tests/Benchmarks/tls_throughput.py [--clients 20] [--messages 50] [--sessions 300] [--binary PATH]
"""
import argparse
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time

from smtp_throughput import free_port, percentile, run_load, terminate, wait_for_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "bench-password-1"


def make_certificate(directory):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        cwd=directory, check=True, capture_output=True)
    os.chmod(os.path.join(directory, "key.pem"), 0o600)
    return os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_load(port, clients, messages, context=None, login=False):
    def prepare(smtp):
        if context is not None:
            smtp.starttls(context=context)
        if login:
            smtp.login("bench", PASSWORD)

    return run_load(port, clients, messages, prepare)


def handshake_load(pid, port, sessions, mode, context):
    """Sessions one after another: connect (+ TLS), EHLO, QUIT. Returns latencies and server CPU seconds."""
    latencies = []
    cpu_before = cpu_seconds(pid)
    for _ in range(sessions):
        started = time.perf_counter()
        if mode == "implicit":
            with smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="bench.example", context=context,
                                  timeout=30) as smtp:
                smtp.ehlo()
        else:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=30) as smtp:
                smtp.ehlo()
                if mode == "starttls":
                    smtp.starttls(context=context)
                    smtp.ehlo()
        latencies.append(time.perf_counter() - started)
    time.sleep(0.2)  # the last sessions' close bookkeeping
    return latencies, cpu_seconds(pid) - cpu_before


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--binary", default=os.environ.get(
        "GATEWAY_BIN", os.path.join(ROOT, ".build", "release", "acs-smtp-gateway")))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench-tls-")
    cert, key = make_certificate(work)
    users = os.path.join(work, "users")
    subprocess.run([args.binary, "passwd", "--users-file", users, "--sender", "*", "bench"], input=PASSWORD + "\n",
                   text=True, check=True, capture_output=True)
    outbox = os.path.join(work, "outbox")
    plain, starttls, implicit = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [args.binary, "serve", "--config", "none", "--listen", f"127.0.0.1:{plain}", "--outbox", outbox,
         "--log-level", "warning", "--tls-certificate", cert, "--tls-key", key, "--users-file", users,
         "--listener", f"127.0.0.1:{starttls} tls=starttls auth=optional",
         "--listener", f"127.0.0.1:{implicit} tls=implicit auth=optional"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    context = ssl.create_default_context(cafile=cert)
    rows, failed = [], False
    try:
        # The implicit-TLS port sends no plaintext greeting: the other two show the gateway is up.
        for port in (plain, starttls):
            wait_for_port(port)
        for name, port, tls, login in [("plaintext", plain, None, False), ("STARTTLS", starttls, context, False),
                                       ("STARTTLS + AUTH PLAIN", starttls, context, True)]:
            wall, latencies, errors = session_load(port, args.clients, args.messages, tls, login)
            rows.append((name, len(latencies), len(latencies) / wall, percentile(latencies, 0.5) * 1000,
                         percentile(latencies, 0.99) * 1000, errors))
            failed = failed or len(latencies) != args.clients * args.messages
        handshakes = []
        for name, port, mode in [("plaintext", plain, "plain"), ("STARTTLS", starttls, "starttls"),
                                 ("implicit TLS", implicit, "implicit")]:
            latencies, cpu = handshake_load(process.pid, port, args.sessions, mode, context)
            handshakes.append((name, len(latencies), len(latencies) / sum(latencies),
                               percentile(latencies, 0.5) * 1000, cpu / len(latencies) * 1000))
    finally:
        terminate(process)
    landed = len([n for n in os.listdir(outbox) if n.endswith(".eml")]) if os.path.isdir(outbox) else 0
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nSession throughput: {args.clients} concurrent smtplib clients x {args.messages} messages of ~1.2 KB, "
          "one session each")
    print(f"{'session':<28} {'msgs':>6} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, sent, rate, p50, p99, errors in rows:
        print(f"{name:<28} {sent:>6} {rate:>9.1f} {p50:>8.2f} {p99:>8.2f}")
        for error in errors[:5]:
            print(f"  error: {error}")
    print(f"\nHandshake cost: {args.sessions} sessions one after another (connect, EHLO, QUIT)")
    print(f"{'session':<28} {'count':>6} {'sess/s':>9} {'p50 ms':>8} {'server CPU ms/session':>22}")
    for name, count, rate, p50, cpu in handshakes:
        print(f"{name:<28} {count:>6} {rate:>9.1f} {p50:>8.2f} {cpu:>22.2f}")
    print(f"messages in the outbox: {landed}")
    if failed or landed != 3 * args.clients * args.messages:
        print("FAILED: not every message was accepted and stored", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
