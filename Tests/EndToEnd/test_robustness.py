"""Harder edges: long text lines, BDAT abuse, back-pressure, stalls in every phase, odd addresses,
and an outbox that disappears."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from e2e_support import CRLF, accepted_id, check, data_payload

SIMPLE = b"Subject: t\r\n\r\nbody\r\n"


def transaction(gw, *rcpts: str, mail: str = "MAIL FROM:<s@example.com>"):
    smtp = gw.connect()
    smtp.greeting()
    smtp.ehlo()
    check(smtp.cmd(mail), 250, "2.1.0")
    for rcpt in rcpts or ("r@example.com",):
        check(smtp.cmd(f"RCPT TO:{rcpt if rcpt.startswith('<') else '<' + rcpt + '>'}"), 250, "2.1.5")
    return smtp


def send_simple(smtp, content=SIMPLE):
    check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
    check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
    check(smtp.cmd("DATA"), 354)
    smtp.send(data_payload(content))
    return accepted_id(smtp.reply())


# ---------------------------------------------------------------------------------------------------
# Text lines in DATA: accepted up to a generous cap (64 KiB), refused after the end of data above it


def test_long_html_line_is_accepted_byte_identical(gateway):
    html = b"<p>" + b"x" * 60_000 + b"</p>"
    content = b"Content-Type: text/html\r\n\r\n" + html + CRLF
    with transaction(gateway) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(content))
        accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.eml == content


def test_text_line_over_cap_refused_after_end_of_data_and_session_usable(gateway):
    content = b"Subject: long\r\n\r\n" + b"y" * 70_000 + b"\r\nMAIL FROM:<evil@example.com>\r\n"
    with transaction(gateway) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(content))
        check(smtp.reply(), 500, "5.5.2")
        smtp.assert_silent(0.3)
        good = send_simple(smtp)
    landed = gateway.wait_for_messages(1)
    assert [m.id for m in landed] == [good]


def test_text_line_cap_boundary_is_64_kib_including_crlf(gateway):
    # SMTPLimits.maxTextLineLength: "Longest text line in DATA, in octets including CRLF" = 65536.
    at_cap = b"a" * (65536 - 2) + CRLF       # 65536 octets with CRLF: accepted
    over_cap = b"b" * (65536 - 1) + CRLF     # 65537 octets with CRLF: over the cap
    with transaction(gateway) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(at_cap))
        accepted_id(smtp.reply())
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(over_cap))
        reply = smtp.reply()
    assert reply.code == 500 and reply.enhanced == "5.5.2", (
        f"a 65537-octet text line (65535 + CRLF) was answered {reply.raw!r}; the documented cap is 65536 "
        f"octets including CRLF")


# ---------------------------------------------------------------------------------------------------
# BDAT abuse


@pytest.mark.parametrize("argument", ["-1", "abc", "99999999999999999999999", "", "10 LAST extra", "10 NOTLAST",
                                      "0x10", "+5"])
def test_bad_bdat_arguments_are_501(gateway, argument):
    # A BDAT whose size cannot be read loses the framing (octets of unknown count may follow), so the
    # gateway may close the session after the 501; what it must never do is run those octets as commands.
    with transaction(gateway) as smtp:
        smtp.send(f"BDAT {argument}".rstrip().encode() + CRLF + b"RSET\r\nNOOP\r\n")
        reply = smtp.reply()
        assert reply.code == 501 and reply.enhanced == "5.5.4", reply
        rest = smtp.read_to_eof(3)
        assert rest == b"", f"octets after a malformed BDAT were executed: {rest!r}"
    assert gateway.files() == []


def test_bdat_total_over_size_limit_across_chunks(start_gateway):
    gw = start_gateway("--max-message-size", "1000")
    with transaction(gw) as smtp:
        for _ in range(3):
            smtp.send(b"BDAT 400\r\n" + b"c" * 400)
            reply = smtp.reply()
            if reply.code != 250:
                break
        # The third chunk takes the total to 1200: refused now or at LAST, never accepted.
        if reply.code == 250:
            smtp.send(b"BDAT 0 LAST\r\n")
            reply = smtp.reply()
        check(reply, 552, "5.3.4")
        check(smtp.cmd("RSET"), 250, "2.0.0")
        send_simple(smtp)
    assert [len(m.eml) for m in gw.wait_for_messages(1)] == [len(SIMPLE)]
    # One audit line for the refused BDAT transaction, one for the stored message.
    audit = [line for line in gw.stderr().splitlines() if " msg=message " in line]
    assert len(audit) == 2, audit
    assert "reason=too_large" in audit[0] and "smtp.transfer=BDAT" in audit[0] and "smtp.size=1200" in audit[0]
    assert "reason=stored" in audit[1]


def test_bdat_stall_mid_chunk_gets_421_and_nothing_lands(start_gateway):
    gw = start_gateway("--data-timeout", "2")
    with transaction(gw) as smtp:
        smtp.send(b"BDAT 100 LAST\r\n" + b"d" * 40)
        smtp.sock.settimeout(8)
        check(smtp.reply(), 421, "4.4.2")
        smtp.assert_closed()
    time.sleep(0.2)
    assert gw.files() == []


def test_silence_right_after_354_gets_421(start_gateway):
    gw = start_gateway("--data-timeout", "2")
    with transaction(gw) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.sock.settimeout(8)
        started = time.monotonic()
        check(smtp.reply(), 421, "4.4.2")
        assert time.monotonic() - started < 5
        smtp.assert_closed()
    assert gw.files() == []


# ---------------------------------------------------------------------------------------------------
# Back-pressure: a client that pipelines far more than it reads


def test_client_that_does_not_read_its_replies(gateway):
    count = 60_000  # 360 KB of commands, 1 MB of replies: both socket buffers fill up
    errors = []

    with gateway.connect(timeout=30) as smtp:
        smtp.greeting()

        def writer():
            try:
                smtp.sock.sendall(b"NOOP\r\n" * count + b"QUIT\r\n")
            except OSError as error:
                errors.append(error)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(1.0)  # do not read for a while
        rss_kb = int(next(line for line in open(f"/proc/{gateway.pid}/status")
                          if line.startswith("VmRSS:")).split()[1])
        replies = 0
        data = b""
        while True:
            chunk = smtp.sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        thread.join(timeout=10)
    assert not errors
    lines = data.split(b"\r\n")
    replies = sum(1 for line in lines if line == b"250 2.0.0 OK")
    assert replies == count, f"{replies} NOOP replies of {count}"
    assert lines[-2].startswith(b"221 2.0.0"), lines[-3:]
    assert rss_kb < 200_000, f"gateway RSS {rss_kb} KiB while a client was not reading"


# ---------------------------------------------------------------------------------------------------
# Addresses and EHLO names


def test_quoted_local_part_source_route_and_postmaster(start_gateway):
    # This gateway has no mailboxes: <postmaster> goes to --postmaster-address.
    gateway = start_gateway("--postmaster-address", "hostmaster@example.org")
    with transaction(gateway, '<"john \\"q\\" doe"@example.com>', "<@a.example,@b.example:user@c.example>",
                     "<postmaster>", "<PostMaster>", mail='MAIL FROM:<"sender with space"@example.com>') as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.envelope["mailFrom"] == '"sender with space"@example.com'
    rcpt = landed.envelope["rcptTo"]
    assert rcpt == ['"john \\"q\\" doe"@example.com', "user@c.example", "hostmaster@example.org",
                    "hostmaster@example.org"]


def test_postmaster_without_a_configured_address_is_kept_by_the_outbox(start_gateway):
    # RFC 5321 §4.5.1: <postmaster>, with or without the gateway's own name, MUST be accepted; the outbox keeps it.
    gateway = start_gateway("--hostname", "gw.example")
    with transaction(gateway, "<postmaster>", "<Postmaster@GW.example>", "<b@example.com>") as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.envelope["rcptTo"] == ["postmaster", "Postmaster@GW.example", "b@example.com"]


def test_ehlo_again_resets_the_transaction(gateway):
    with transaction(gateway) as smtp:
        smtp.ehlo("other.example")
        check(smtp.cmd("DATA"), 503, "5.5.1")
        send_simple(smtp)
    (landed,) = gateway.wait_for_messages(1)
    assert landed.record["client"]["helo"] == "other.example"


def test_commands_after_quit_in_the_same_write_are_not_answered(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.send(b"EHLO client.example\r\nQUIT\r\nMAIL FROM:<s@example.com>\r\nNOOP\r\n")
        smtp.reply()
        check(smtp.reply(), 221, "2.0.0")
        smtp.assert_closed()


def test_nul_and_8bit_in_commands(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        reply = smtp.cmd(b"NO\x00OP")
        assert reply.code in (500, 501), reply
        reply = smtp.cmd(b"MAIL FROM:<s\x00@example.com>")
        assert reply.code in (501, 553), reply
        reply = smtp.cmd(b"MAIL FROM:<\xff\xfe@example.com> SMTPUTF8")  # not UTF-8
        assert reply.code in (501, 553), reply
        check(smtp.cmd("NOOP"), 250, "2.0.0")
    assert gateway.files() == []


# ---------------------------------------------------------------------------------------------------
# The outbox disappears: the client must get a temporary failure, never a false 250


def test_outbox_removed_while_running(gateway):
    shutil.rmtree(gateway.outbox)
    with transaction(gateway) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        reply = smtp.reply()
    if reply.code == 250:  # the gateway re-created the directory: then the message must be there
        message_id = accepted_id(reply)
        (landed,) = gateway.messages()
        assert landed.id == message_id and landed.eml == SIMPLE
    else:
        check(reply, 451, "4.3.0")
    assert gateway.alive()


# ---------------------------------------------------------------------------------------------------
# Transaction boundaries with BDAT, empty messages, listener options, files on disk before the reply


def test_rset_between_bdat_chunks_discards_them(gateway):
    with transaction(gateway) as smtp:
        smtp.send(b"BDAT 5\r\nhello")
        check(smtp.reply(), 250, "2.0.0")
        check(smtp.cmd("RSET"), 250, "2.0.0")
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r2@example.com>"), 250, "2.1.5")
        smtp.send(b"BDAT 6\r\nworld!")
        check(smtp.reply(), 250, "2.0.0")
        smtp.ehlo("again.example")  # a new EHLO aborts the transaction too
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r3@example.com>"), 250, "2.1.5")
        smtp.send(b"BDAT 4 LAST\r\nonly")
        message_id = accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.id == message_id
    assert landed.eml == b"only"
    assert landed.envelope["rcptTo"] == ["r3@example.com"]


def test_empty_messages(gateway):
    with transaction(gateway) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(b".\r\n")
        first = accepted_id(smtp.reply())
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        smtp.send(b"BDAT 0 LAST\r\n")
        second = accepted_id(smtp.reply())
    landed = {m.id: m.eml for m in gateway.wait_for_messages(2)}
    assert landed == {first: b"", second: b""}


def test_files_are_on_disk_when_250_arrives_and_no_temp_files_remain(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        for n in range(20):
            message_id = send_simple(smtp, b"Subject: %d\r\n\r\nx\r\n" % n)
            assert (gateway.outbox / f"{message_id}.eml").read_bytes() == b"Subject: %d\r\n\r\nx\r\n" % n
            record = (gateway.outbox / f"{message_id}.json").read_bytes()
            assert record.endswith(b"}\n") or record.endswith(b"}")
    names = gateway.files()
    assert len(names) == 40
    assert all(name.endswith((".eml", ".json")) and not name.startswith(".") for name in names), names


def test_several_listen_addresses_and_hostname(start_gateway):
    from e2e_support import RawSMTP, free_port
    second_port = free_port()
    try:
        ipv6_port = free_port("::1")
    except OSError:
        ipv6_port = None
    extra = ["--listen", f"127.0.0.1:{second_port}", "--hostname", "gw.example"]
    if ipv6_port:
        extra += ["--listen", f"[::1]:{ipv6_port}"]
    gw = start_gateway(*extra)
    targets = [(gw.host, gw.port), ("127.0.0.1", second_port)] + ([("::1", ipv6_port)] if ipv6_port else [])
    for host, port in targets:
        with RawSMTP(host, port) as smtp:
            assert smtp.greeting().lines[0].startswith("gw.example ")
            assert smtp.ehlo().lines[0].startswith("gw.example ")
            send_simple(smtp)
    assert len(gw.wait_for_messages(len(targets))) == len(targets)


def test_bdat_aborted_transactions_do_not_bypass_the_size_limit(start_gateway):
    gw = start_gateway("--max-message-size", "1000")
    with gw.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        for octet in b"ABC":
            check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
            check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
            smtp.send(b"BDAT 900\r\n" + bytes([octet]) * 900)
            check(smtp.reply(), 250, "2.0.0")
            check(smtp.cmd("RSET"), 250, "2.0.0")
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        smtp.send(b"BDAT 900 LAST\r\n" + b"Z" * 900)
        message_id = accepted_id(smtp.reply())
    (landed,) = gw.wait_for_messages(1)
    assert landed.id == message_id
    assert len(landed.eml) <= 1000, f"a {len(landed.eml)}-octet message passed --max-message-size 1000"
    assert landed.eml == b"Z" * 900


def fd_count(gw) -> int:
    import os
    return len(os.listdir(f"/proc/{gw.pid}/fd"))


@pytest.mark.parametrize("when", ["after-data", "after-354", "idle", "fin-after-data"])
def test_reset_right_after_data_is_noticed(gateway, when):
    # A client that vanishes (RST, or FIN) must be noticed at once: its socket is closed, so it leaks
    # no descriptor, does not count against connection limits, and does not hold up a shutdown.
    import socket as socket_module
    import struct
    time.sleep(0.2)
    baseline = fd_count(gateway)
    for _ in range(20):
        smtp = gateway.connect()
        smtp.greeting()
        smtp.ehlo()
        if when != "idle":
            check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
            check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
            check(smtp.cmd("DATA"), 354)
        if when in ("after-data", "fin-after-data"):
            smtp.send(b"Subject: reset\r\n\r\nabc\r\n")
        if when != "fin-after-data":
            smtp.sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_LINGER, struct.pack("ii", 1, 0))
        smtp.close()
    deadline = time.monotonic() + 3
    while fd_count(gateway) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fd_count(gateway) <= baseline, (
        f"{fd_count(gateway) - baseline} of 20 vanished clients still hold a descriptor in the gateway")
    assert gateway.files() == []
