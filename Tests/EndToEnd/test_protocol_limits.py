"""Protocol limits and error discipline, end to end: line lengths, SIZE, recipients, sequence errors,
the error limit, timeouts and clients that vanish mid-DATA."""

from __future__ import annotations

import select
import socket
import time

from e2e_support import CRLF, accepted_id, check, data_payload

SIMPLE = b"Subject: t\r\n\r\nbody\r\n"


def open_transaction(gw, rcpts=("r@example.com",), mail="MAIL FROM:<s@example.com>"):
    smtp = gw.connect()
    smtp.greeting()
    smtp.ehlo()
    check(smtp.cmd(mail), 250, "2.1.0")
    for rcpt in rcpts:
        check(smtp.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
    return smtp


def send_message(smtp, content=SIMPLE, rcpt="r@example.com"):
    check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
    check(smtp.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
    check(smtp.cmd("DATA"), 354)
    smtp.send(data_payload(content))
    return accepted_id(smtp.reply())


# ---------------------------------------------------------------------------------------------------
# Command line length (RFC 5321 §4.5.3.1.4: at least 512; default limit 2048 including CRLF)


def test_600_byte_command_lines_are_accepted(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        noop = b"NOOP " + b"n" * 593
        assert len(noop + CRLF) == 600
        check(smtp.cmd(noop), 250, "2.0.0")
        # The longest legal path (RFC 5321 §4.5.3.1.3: 256 octets with the brackets) with a parameter.
        local = "l" * 64
        domain = ".".join(["d" * 61] * 3) + ".ex"
        assert len(f"<{local}@{domain}>") == 255
        check(smtp.cmd(f"MAIL FROM:<{local}@{domain}> SIZE=100 BODY=8BITMIME"), 250, "2.1.0")
        check(smtp.cmd(f"RCPT TO:<{local}@{domain}>"), 250, "2.1.5")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.envelope["rcptTo"] == [f"{local}@{domain}"]
    assert landed.eml == SIMPLE


def test_command_line_limit_boundary(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        check(smtp.cmd(b"NOOP " + b"x" * (2048 - 7)), 250, "2.0.0")  # exactly 2048 with CRLF
        check(smtp.cmd(b"NOOP " + b"x" * (2048 - 6)), 500, "5.5.2")  # 2049
        smtp.assert_closed()


def test_100kb_command_line_gets_500_and_close(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        try:
            smtp.send(b"NOOP " + b"A" * 100_000 + CRLF)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once the limit is passed; the reply must still arrive
        reply = smtp.reply()
        check(reply, 500, "5.5.2")
        smtp.assert_closed()
    # The gateway is still fine.
    with gateway.connect() as smtp:
        smtp.greeting()
        check(smtp.cmd("NOOP"), 250, "2.0.0")


# ---------------------------------------------------------------------------------------------------
# Message size (RFC 1870)


def test_message_one_byte_over_size_limit_552_and_connection_usable(start_gateway):
    gw = start_gateway("--max-message-size", "2000")
    exact = b"Subject: exact\r\n\r\n" + b"e" * (2000 - 18 - 2) + CRLF
    over = b"Subject: over!\r\n\r\n" + b"o" * (2000 - 18 - 1) + CRLF
    assert len(exact) == 2000 and len(over) == 2001
    with gw.connect() as smtp:
        smtp.greeting()
        assert "SIZE 2000" in smtp.ehlo().lines
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(over))
        check(smtp.reply(), 552, "5.3.4")
        # The connection is still usable, the transaction was reset, and a message at the limit passes.
        check(smtp.cmd("RCPT TO:<r@example.com>"), 503, "5.5.1")
        exact_id = send_message(smtp, exact)
        check(smtp.cmd("QUIT"), 221, "2.0.0")
    landed = gw.wait_for_messages(1)
    assert [m.id for m in landed] == [exact_id]
    assert landed[0].eml == exact


def test_huge_message_is_read_to_its_end_then_552(start_gateway):
    # Far over the limit, with lines that look like commands: none of them may be executed.
    gw = start_gateway("--max-message-size", "1000")
    junk = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n" * 20000)
    with open_transaction(gw) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(b"Subject: big\r\n\r\n" + junk + b".\r\n")
        check(smtp.reply(), 552, "5.3.4")
        smtp.assert_silent(0.3)
        send_message(smtp)
    landed = gw.wait_for_messages(1)
    assert len(landed) == 1 and landed[0].eml == SIMPLE


def test_mail_size_parameter_over_limit_refused_at_mail(start_gateway):
    gw = start_gateway("--max-message-size", "2000")
    with gw.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("MAIL FROM:<s@example.com> SIZE=2001"), 552, "5.3.4")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 503, "5.5.1")
        check(smtp.cmd("MAIL FROM:<s@example.com> size=2000"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        accepted_id(smtp.reply())
    (landed,) = gw.wait_for_messages(1)
    assert landed.envelope["parameters"] == {"SIZE": "2000"}


def test_mail_size_parameter_bigger_than_any_integer(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        reply = smtp.cmd("MAIL FROM:<s@example.com> SIZE=" + "9" * 40)
        assert reply.code in (552, 501), reply
        assert reply.enhanced in ("5.3.4", "5.5.4"), reply
        check(smtp.cmd("NOOP"), 250, "2.0.0")


# ---------------------------------------------------------------------------------------------------
# Recipients (default 50 per transaction, the ACS maximum) → 452 4.5.3 for the rest


def test_rcpt_number_51_gets_452_and_50_are_delivered(gateway):
    recipients = [f"r{n:02d}@example.com" for n in range(1, 53)]
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        for rcpt in recipients[:50]:
            check(smtp.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
        check(smtp.cmd(f"RCPT TO:<{recipients[50]}>"), 452, "4.5.3")
        check(smtp.cmd(f"RCPT TO:<{recipients[51]}>"), 452, "4.5.3")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        first = accepted_id(smtp.reply())
        # The client sends the rest in another transaction.
        second = send_message(smtp, rcpt=recipients[50])
    landed = gateway.wait_for_messages(2)
    assert [m.id for m in landed] == [first, second]
    assert landed[0].envelope["rcptTo"] == recipients[:50]
    assert landed[1].envelope["rcptTo"] == [recipients[50]]


def test_max_recipients_option(start_gateway):
    gw = start_gateway("--max-recipients", "2")
    with open_transaction(gw, rcpts=("a@example.com", "b@example.com")) as smtp:
        check(smtp.cmd("RCPT TO:<c@example.com>"), 452, "4.5.3")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        accepted_id(smtp.reply())
    (landed,) = gw.wait_for_messages(1)
    assert landed.envelope["rcptTo"] == ["a@example.com", "b@example.com"]


# ---------------------------------------------------------------------------------------------------
# Sequence errors (RFC 5321 §4.1.4) and the error limit


def test_data_before_rcpt_is_503(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("DATA"), 503, "5.5.1")              # no MAIL
        check(smtp.cmd("RCPT TO:<r@example.com>"), 503, "5.5.1")
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("DATA"), 503, "5.5.1")              # MAIL but no RCPT
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 503, "5.5.1")  # nested MAIL
        # BDAT without RCPT: refused, and its chunk is swallowed, not executed (an extra reply or a
        # reset transaction would show that "RSET" ran as a command).
        smtp.send(b"BDAT 6 LAST\r\nRSET\r\n")
        check(smtp.reply(), 503, "5.5.1")
        smtp.assert_silent(0.3)
        check(smtp.cmd("RSET"), 250, "2.0.0")  # the failed BDAT may or may not have ended the transaction
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        check(smtp.cmd("DATA"), 354)
        smtp.send(data_payload(SIMPLE))
        accepted_id(smtp.reply())
    assert len(gateway.wait_for_messages(1)) == 1


def test_mail_before_ehlo_is_503(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 503, "5.5.1")
        check(smtp.cmd("HELO client.example"), 250)
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")


def test_eleven_bad_commands_ten_500_then_421_and_close(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        for n in range(10):
            check(smtp.cmd(f"XYZZY{n}"), 500, "5.5.2")
        check(smtp.cmd("XYZZY10"), 421, "4.7.0")
        smtp.assert_closed()


def test_eleven_bad_commands_pipelined_in_one_write(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.send(b"".join(b"BOGUS %d\r\n" % n for n in range(11)) + b"NOOP\r\n")
        for _ in range(10):
            check(smtp.reply(), 500, "5.5.2")
        check(smtp.reply(), 421, "4.7.0")
        smtp.assert_closed()  # the NOOP after the 11th error is not answered


def test_other_commands_and_case_insensitive_verbs(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        ehlo = smtp.cmd("ehlo client.example")
        check(ehlo, 250)
        assert ehlo.lines[1:] == ["PIPELINING", "SIZE 7340032", "8BITMIME", "SMTPUTF8",
                                  "ENHANCEDSTATUSCODES", "CHUNKING", "HELP"]
        check(smtp.cmd("noop"), 250, "2.0.0")
        check(smtp.cmd("VRFY postmaster"), 252, "2.5.2")
        check(smtp.cmd("EXPN staff"), 502, "5.5.1")
        check(smtp.cmd("help"), 214, "2.0.0")
        check(smtp.cmd("MAIL FROM:<s@example.com> FOO=bar"), 555, "5.5.4")
        check(smtp.cmd("MAIL FROM:<s@example.com"), 501)
        check(smtp.cmd("MAIL TO:<s@example.com>"), 501)
        check(smtp.cmd("Mail From:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("rset"), 250, "2.0.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 503, "5.5.1")  # RSET ended the transaction
        check(smtp.cmd("quit"), 221, "2.0.0")
        smtp.assert_closed()


def test_non_ascii_address_requires_smtputf8(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("MAIL FROM:<jörg@example.com>"), 553, "5.6.7")
        check(smtp.cmd("MAIL FROM:<jörg@example.com> SMTPUTF8"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<zoë@example.com>"), 250, "2.1.5")


# ---------------------------------------------------------------------------------------------------
# Timeouts and vanishing clients: nothing may land


def test_client_that_stops_mid_data_gets_421_and_nothing_lands(start_gateway):
    gw = start_gateway("--data-timeout", "2")
    with open_transaction(gw) as smtp:
        check(smtp.cmd("DATA"), 354)
        smtp.send(b"Subject: stalled\r\n\r\nhalf a mess")
        started = time.monotonic()
        smtp.sock.settimeout(8)
        check(smtp.reply(), 421, "4.4.2")
        waited = time.monotonic() - started
        assert 1.5 <= waited <= 5, f"421 after {waited:.1f}s with --data-timeout 2"
        smtp.assert_closed()
    time.sleep(0.3)
    assert gw.files() == []


def test_client_that_disconnects_mid_data_leaves_nothing(gateway):
    smtp = open_transaction(gateway)
    check(smtp.cmd("DATA"), 354)
    smtp.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 100 + b"no end")
    smtp.close()
    # Same with an RST instead of a FIN, and mid-BDAT.
    smtp = open_transaction(gateway)
    check(smtp.cmd("DATA"), 354)
    smtp.send(b"Subject: reset\r\n\r\nabc\r\n")
    smtp.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    smtp.close()
    smtp = open_transaction(gateway)
    smtp.send(b"BDAT 1000 LAST\r\n" + b"b" * 500)
    smtp.close()
    # The gateway is still serving, and only the next complete message lands.
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        good = send_message(smtp)
    time.sleep(0.3)
    assert [m.id for m in gateway.messages()] == [good]
    assert sorted(gateway.files()) == sorted([f"{good}.eml", f"{good}.json"])


def test_idle_client_gets_command_timeout(start_gateway):
    gw = start_gateway("--command-timeout", "1")
    with gw.connect() as smtp:
        smtp.greeting()
        smtp.sock.settimeout(6)
        check(smtp.reply(), 421, "4.4.2")
        smtp.assert_closed()


def test_trickling_a_command_does_not_extend_the_command_timeout(start_gateway):
    gw = start_gateway("--command-timeout", "2")
    with gw.connect() as smtp:
        smtp.greeting()
        started = time.monotonic()
        for _ in range(60):  # one byte every 0.1 s, never a complete line
            readable, _, _ = select.select([smtp.sock], [], [], 0.1)
            if readable:
                break
            try:
                smtp.send(b"N")
            except OSError:
                break
        elapsed = time.monotonic() - started
        data = smtp.read_to_eof()
        assert data.startswith(b"421 4.4.2 "), data
        assert elapsed < 4.5, f"closed after {elapsed:.1f}s with --command-timeout 2"


def test_100_recipients_pipelined_extra_452s_do_not_count_as_errors(gateway):
    # A Postfix-style client pipelines all its RCPTs: the 50 extra 452s must not exhaust the error budget
    # (10) and close the session, or the whole message would be lost.
    recipients = [f"p{n:03d}@example.com" for n in range(100)]
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        smtp.send(b"MAIL FROM:<s@example.com>\r\n" + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in recipients)
                  + b"DATA\r\n")
        check(smtp.reply(), 250, "2.1.0")
        for _ in range(50):
            check(smtp.reply(), 250, "2.1.5")
        for _ in range(50):
            check(smtp.reply(), 452, "4.5.3")
        check(smtp.reply(), 354)
        smtp.send(data_payload(SIMPLE))
        accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.envelope["rcptTo"] == recipients[:50]


def test_default_size_limit_advertised_size_is_accepted(gateway):
    # Whatever the default limit is (once 10 MiB; smtp-behaviour #10 suggests ~7 MB so that the ACS
    # request stays under 10 MB), a message of exactly the advertised SIZE must be accepted and one octet
    # more refused with 552 5.3.4 — a client that checks SIZE before sending must never be refused later.
    with gateway.connect() as probe:
        probe.greeting()
        limit = int(next(line for line in probe.ehlo().lines if line.startswith("SIZE ")).split()[1])
    line = b"A" * 76 + CRLF
    body = b"Subject: big\r\n\r\n" + line * ((limit - 20) // len(line))
    exact = body + b"B" * (limit - len(body) - 2) + CRLF
    over = exact[:-2] + b"B" + CRLF
    assert len(exact) == limit and len(over) == limit + 1
    with gateway.connect(timeout=60) as smtp:
        smtp.greeting()
        smtp.ehlo()
        for content, expected in ((over, 552), (exact, 250)):
            check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
            check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
            check(smtp.cmd("DATA"), 354)
            smtp.send(data_payload(content))
            reply = smtp.reply()
            if expected == 552:
                check(reply, 552, "5.3.4")
            else:
                message_id = accepted_id(reply)
    (landed,) = gateway.wait_for_messages(1)
    assert landed.id == message_id
    assert landed.eml == exact


def test_timeouts_measure_silence_not_session_age(start_gateway):
    # An active client outlives both timeouts: a NOOP every 0.4 s for 3 s with --command-timeout 1, then
    # message data trickled every 0.4 s for 3 s with --data-timeout 1.
    gw = start_gateway("--command-timeout", "1", "--data-timeout", "1")
    with gw.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        for _ in range(8):
            time.sleep(0.4)
            check(smtp.cmd("NOOP"), 250, "2.0.0")
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        check(smtp.cmd("DATA"), 354)
        smtp.send(b"Subject: slow\r\n\r\n")
        for n in range(8):
            time.sleep(0.4)
            smtp.send(b"line %d\r\n" % n)
        smtp.send(b".\r\n")
        accepted_id(smtp.reply())
    (landed,) = gw.wait_for_messages(1)
    assert landed.eml == b"Subject: slow\r\n\r\n" + b"".join(b"line %d\r\n" % n for n in range(8))
