"""HTTP/2 end to end: many SMTP clients at once → the real gateway → the emulator speaking h2 over https.

Real ACS endpoints speak HTTP/2, so the gateway's libcurl transport multiplexes concurrent sends on one
connection (one socket shared by many transfers). The emulator offers h2 and http/1.1 by ALPN (its default
with TLS) and records each request's HTTP version and client connection; these tests read that back.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from test_acs_delivery import deliver, send  # noqa: F401  (deliver: a gateway delivering to an emulator)

CLIENTS = 20


def send_one(gateway, index: int):
    return send(gateway, (f"From: App <app@legacy.example>\r\nTo: Ann <ann@example.net>\r\nSubject: h2 {index}\r\n"
                          f"Message-ID: <h2-{index}@legacy.example>\r\n\r\nMessage {index} over HTTP/2.\r\n").encode())


def send_concurrently(gateway, count: int = CLIENTS):
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda index: send_one(gateway, index), range(count)))


def test_concurrent_messages_are_sent_over_multiplexed_http2(deliver):  # noqa: F811
    gateway, emulator = deliver()
    replies = send_concurrently(gateway)
    assert [code for code, _ in replies] == [250] * CLIENTS, replies
    operation_ids = sorted(text.rsplit(" ", 1)[1] for _, text in replies)
    messages = emulator.messages()
    assert sorted(message["operationId"] for message in messages) == operation_ids
    assert sorted(message["request"]["content"]["subject"] for message in messages) == \
        sorted(f"h2 {index}" for index in range(CLIENTS))
    # Proof of the protocol: the emulator saw every send as HTTP/2 ...
    assert {message["httpVersion"] for message in messages} == {"2"}
    counts = emulator.admin("GET", "/admin/requests")["send"]
    assert counts["total"] == CLIENTS
    assert counts["httpVersions"] == {"2": CLIENTS}
    # ... multiplexed on fewer connections than sends (libcurl may open a second while the first handshakes).
    assert 1 <= counts["connections"] <= 2, counts


def test_with_http2_off_the_gateway_falls_back_to_http_1_1(deliver):  # noqa: F811
    gateway, emulator = deliver(emulator_args=("--no-http2",))
    replies = send_concurrently(gateway, 5)
    assert [code for code, _ in replies] == [250] * 5, replies
    assert {message["httpVersion"] for message in emulator.messages()} == {"1.1"}
    assert emulator.admin("GET", "/admin/requests")["send"]["httpVersions"] == {"1.1": 5}


def test_sigterm_stops_the_emulator_while_the_gateway_holds_an_idle_http2_connection(deliver):  # noqa: F811
    # Hummingbird closes an HTTP/2 connection at shutdown only once the client answers a PING; libcurl's multi
    # interface does not read an idle connection, so the emulator must not wait for that answer forever.
    gateway, emulator = deliver()
    assert send_one(gateway, 0)[0] == 250
    assert emulator.messages()[0]["httpVersion"] == "2"
    started = time.monotonic()
    assert emulator.stop() == 0
    assert time.monotonic() - started < 3
    assert gateway.alive()
