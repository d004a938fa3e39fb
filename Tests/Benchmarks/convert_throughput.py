#!/usr/bin/env python3
"""MIME → ACS conversion benchmark: throughput over the shared corpus and peak RSS for a 7 MB attachment.

Runs the release binary's `convert --quiet --stats` (parse + translate + encode, no I/O per message) over
every corpus message, repeated to get a stable figure, and as a baseline side by side Python's stdlib
`email` parser (parse + walk + decode payloads, no translation) over the same bytes. A figure, not a test.

    python3 Tests/Benchmarks/convert_throughput.py [--repeat 20] [--binary PATH]
"""
import argparse
import base64
import email
import email.policy
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(os.path.dirname(ROOT), "shared", "corpus")


def corpus_files():
    files = []
    for pattern in ("stalwart/*/*.eml", "nodemailer/*.eml", "cpython/msg_*.txt"):
        files += sorted(glob.glob(os.path.join(CORPUS, pattern)))
    return files


def timed(command):
    result = subprocess.run(["/usr/bin/time", "-v"] + command, capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    stats = re.search(r"converted (\d+) messages \(([\d.]+) MB\) in ([\d.]+) s: ([\d.]+) MB/s, (\d+) messages/s",
                      result.stderr)
    return result, (int(rss.group(1)) / 1024 if rss else None), stats


def python_baseline(files, repeat):
    blobs = [open(path, "rb").read() for path in files]
    started = time.perf_counter()
    for _ in range(repeat):
        for blob in blobs:
            message = email.message_from_bytes(blob, policy=email.policy.default)
            for part in message.walk():
                if not part.is_multipart():
                    try:
                        part.get_payload(decode=True)
                    except Exception:
                        pass
    elapsed = time.perf_counter() - started
    size = sum(len(b) for b in blobs) * repeat / 1e6
    return size / elapsed, len(blobs) * repeat / elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--binary", default=os.environ.get(
        "GATEWAY_BIN", os.path.join(ROOT, ".build", "release", "acs-smtp-gateway")))
    args = parser.parse_args()

    files = corpus_files()
    if not files:
        print(f"no corpus found under {CORPUS}", file=sys.stderr)
        return 1
    result, rss, stats = timed([args.binary, "convert", "--quiet", "--stats"] + files * args.repeat)
    if not stats:
        print(result.stderr[-2000:], file=sys.stderr)
        return 1
    py_mbps, py_msgs = python_baseline(files, max(1, args.repeat // 4))

    with tempfile.TemporaryDirectory() as work:
        big = os.path.join(work, "seven-megabytes.eml")
        payload = os.urandom(7 * 1024 * 1024)
        with open(big, "wb") as out:
            out.write(b"From: a@example.com\r\nTo: b@example.net\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
                      b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
                      b"see attachment\r\n--XX\r\nContent-Type: application/pdf; name=big.pdf\r\n"
                      b"Content-Transfer-Encoding: base64\r\n\r\n")
            encoded = base64.b64encode(payload)
            out.write(b"\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)))
            out.write(b"\r\n--XX--\r\n")
        big_size = os.path.getsize(big)
        big_result, big_rss, big_stats = timed(
            [args.binary, "convert", "--quiet", "--stats", "--max-request-size", "20000000", big])

    print(f"\nMIME -> ACS conversion, {len(files)} corpus messages x {args.repeat}")
    print(f"{'converter':<44} {'MB/s':>8} {'msgs/s':>9} {'peak RSS':>10}")
    print(f"{'acs-smtp-gateway convert (parse+translate)':<44} {float(stats.group(4)):>8.1f} "
          f"{int(stats.group(5)):>9} {rss:>8.1f} MiB")
    print(f"{'python email, policy=default (parse only)':<44} {py_mbps:>8.1f} {py_msgs:>9.0f} {'-':>10}")
    if big_stats:
        print(f"7 MiB attachment ({big_size / 1e6:.1f} MB message): "
              f"{float(big_stats.group(3)) * 1000:.0f} ms, peak RSS {big_rss:.1f} MiB")
    else:
        print("7 MiB attachment: conversion failed: " + big_result.stderr[-500:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
