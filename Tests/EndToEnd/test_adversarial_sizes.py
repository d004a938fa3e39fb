"""Hostile sizes through the real binary, with bounds on memory (memory, not time: a bound with a clear margin).

Each bound is on the growth of peak RSS above what a small message takes, not on the absolute peak: the process
alone (Swift runtime, Foundation, libcurl and OpenSSL, mostly shared library pages) is 30 to 36 MB whatever it
carries, itself 4 to 5 times the 7 MB message, so an absolute bound of a few times the message could never hold.
Both tests print the absolute peak as well.

`convert` of a message carrying a 7 MB attachment (the SMTP size limit's worth, a 9.6 MB message) must need less
than 1.5× the message above what converting a small message takes. It holds the file's octets once: a base64
attachment stays a slice of the file, is re-encoded as the request is written, and the request goes to standard
output in pieces of 64 KiB, so neither the decoded octets, nor a base64 string of them, nor the whole request is
held (about 1× the message in all; 1.7× before the request was written in pieces).

`serve` of a 7 MB message through a running gateway to the ACS emulator must grow the gateway's peak RSS by less
than 3× the message: it holds the message for the whole transaction and the request while it is sent, and
nothing else of that size (about 2× the message)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

ATTACHMENT = 7_000_000

# Runs one child and reports its peak RSS: RUSAGE_CHILDREN of a fresh interpreter covers that child alone.
MEASURE = """
import resource, subprocess, sys
result = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(result.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def peak_rss(*command: str) -> tuple[int, int]:
    """(exit status, peak RSS in octets) of one run of `command`."""
    output = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, timeout=120,
                            check=True).stdout.split()
    return int(output[0]), int(output[1])


def test_convert_of_a_7_mb_attachment_grows_the_peak_under_1_5x_the_message(gateway_bin, tmp_path):
    payload = os.urandom(ATTACHMENT)
    encoded = base64.encodebytes(payload)  # 76-character lines, as mail clients write them
    message = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
               b"--b\r\nContent-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + encoded.replace(b"\n", b"\r\n") + b"--b--\r\n")
    path = tmp_path / "big.eml"
    path.write_bytes(message)
    small = tmp_path / "small.eml"
    small.write_bytes(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: small\r\n\r\nhello\r\n")
    _, baseline = peak_rss(str(gateway_bin), "convert", str(small))
    status, peak = peak_rss(str(gateway_bin), "convert", "--max-request-size", "30MiB", str(path))
    growth = peak - baseline
    print(f"\nconvert of a {ATTACHMENT} octet attachment ({len(message)} octets of MIME): peak RSS {peak} octets "
          f"({peak / len(message):.2f}x the message), {growth} above a small message's {baseline} "
          f"({growth / len(message):.2f}x the message)")
    assert status == 0
    assert growth < 1.5 * len(message)


def vm_hwm(pid: int) -> int:
    """The peak resident set size of process `pid` so far, in octets (VmHWM in /proc/<pid>/status)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def test_serve_of_a_7_mb_message_grows_the_peak_under_3x_its_size(start_gateway, start_emulator, certificates):
    """The same message through a running gateway to the ACS emulator: the gateway's peak RSS may grow by less
    than 3× the message while it receives, translates and sends it (and writes its outbox copy)."""
    import smtplib

    payload = os.urandom(5_250_000)
    encoded = base64.encodebytes(payload)
    message = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
               b"--b\r\nContent-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + encoded.replace(b"\n", b"\r\n") + b"--b--\r\n")
    emulator = start_emulator()
    gateway = start_gateway(
        "--sender-address", "DoNotReply@example.com", "--acs-ca-file", str(certificates / "ca.pem"),
        env={"ACS_CONNECTION_STRING": emulator.connection_string})

    def send(body: bytes) -> int:
        with smtplib.SMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=120) as smtp:
            smtp.ehlo()
            smtp.mail("a@example.com")
            smtp.rcpt("b@example.org")
            return smtp.data(body)[0]

    # A small message first, so the baseline includes the TLS connection to ACS and the code paths' first use.
    assert send(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: small\r\n\r\nhello\r\n") == 250
    baseline = vm_hwm(gateway.pid)
    assert send(message) == 250
    peak = vm_hwm(gateway.pid)
    growth = peak - baseline
    print(f"\nserve of a {len(message)} octet message: peak RSS {peak} octets ({peak / len(message):.2f}x the "
          f"message), {growth} above {baseline} after a small message ({growth / len(message):.2f}x the message)")
    assert growth < 3 * len(message)
