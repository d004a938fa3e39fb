"""SMTP smuggling (CVE-2023-51764/51765/51766, CVE-2024-27305; smtp-behaviour #1, #2).

Each variant is a fake end-of-data sequence followed by a smuggled `MAIL FROM … RCPT … DATA …` and
then the real `<CRLF>.<CRLF>`. Only `<CRLF>.<CRLF>` may end the data: exactly one message lands, it
contains the smuggled text as content, and no reply is ever sent for the smuggled commands.

Each variant is sent three ways: in one write after the 354; with the fake terminator dribbled one
octet per write; and as a whole session pipelined in one write (EHLO … QUIT).
"""

from __future__ import annotations

import time

import pytest

from e2e_support import CRLF, accepted_id, check, stored_from_wire

VARIANTS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CRLF.CR": b"\r\n.\r",
    "LF.CR": b"\n.\r",
    "CR.LF": b"\r.\n",
    "CR.CR": b"\r.\r",
    "CRLF-NUL.CRLF": b"\r\n\x00.\r\n",
    "CRLF.NUL-CRLF": b"\r\n.\x00\r\n",
    "CRCRLF.CRCRLF": b"\r\r\n.\r\r\n",
    "CRLF.CRCRLF": b"\r\n.\r\r\n",
    "CRLF-CR.CRLF": b"\r\n\r.\r\n",
    "LFLF.LFLF": b"\n\n.\n\n",
    "CRLF.LF-CRLF": b"\r\n.\n\r\n",
    "CRLF-SP.CRLF": b"\r\n .\r\n",
    "CRLF.SP-CRLF": b"\r\n. \r\n",
    "CRLF-NUL.NUL-CRLF": b"\r\n\x00.\x00\r\n",
    "CRLF.CRLF-in-two-dots": b"\r\n..\r\n",
}

LEGIT = b"From: alice@example.com\r\nTo: r@example.com\r\nSubject: legit\r\n\r\nlegit body line"
SMUGGLED = (b"MAIL FROM:<smuggled@evil.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
            b"From: smuggled@evil.example\r\nTo: victim@example.com\r\nSubject: SMUGGLED\r\n\r\n"
            b"smuggled body")
REAL_END = b"\r\n.\r\n"

# A variant that contained a real <CRLF>.<CRLF> would not be a smuggling attempt but a real end.
assert not any(REAL_END in LEGIT[-2:] + v + SMUGGLED[:2] for v in VARIANTS.values())


def has_bare_lf(data: bytes) -> bool:
    return any(data[i] == 10 and (i == 0 or data[i - 1] != 13) for i in range(len(data)))


def run_session(gw, variant: bytes, mode: str):
    """Sends one smuggling attempt; returns the replies from the end of data on, then the QUIT reply."""
    wire = LEGIT + variant + SMUGGLED + REAL_END
    with gw.connect() as smtp:
        if mode == "pipelined-session":
            smtp.send(b"EHLO client.example\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<r@example.com>\r\n"
                      b"DATA\r\n" + wire + b"QUIT\r\n")
            smtp.greeting()
            check(smtp.reply(), 250)
            check(smtp.reply(), 250, "2.1.0")
            check(smtp.reply(), 250, "2.1.5")
            check(smtp.reply(), 354)
        else:
            smtp.greeting()
            smtp.ehlo()
            check(smtp.cmd("MAIL FROM:<alice@example.com>"), 250, "2.1.0")
            check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
            check(smtp.cmd("DATA"), 354)
            if mode == "one-write":
                smtp.send(wire)
            else:  # the fake terminator one octet per write, so no read sees it whole
                smtp.send(LEGIT)
                for octet in variant:
                    time.sleep(0.01)
                    smtp.send(bytes([octet]))
                time.sleep(0.01)
                smtp.send(SMUGGLED + REAL_END)
            # The real end of data is the only thing answered; then QUIT.
            smtp.send(b"QUIT\r\n")
        end_reply = smtp.reply()
        quit_reply = smtp.reply()
        rest = smtp.read_to_eof()
    return wire, end_reply, quit_reply, rest


@pytest.mark.parametrize("mode", ["one-write", "dribbled", "pipelined-session"])
@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS.keys()))
def test_fake_end_of_data_is_content(shared_gateway, variant, mode):
    gw = shared_gateway
    before = gw.ids()
    wire, end_reply, quit_reply, rest = run_session(gw, variant, mode)
    message_id = accepted_id(end_reply)
    check(quit_reply, 221, "2.0.0")
    assert rest == b"", f"extra replies (smuggled commands were executed?): {rest!r}"

    landed = gw.wait_for_messages(1, exclude=before)
    time.sleep(0.05)
    landed = gw.messages(exclude=before)
    assert len(landed) == 1, f"{len(landed)} messages landed: {[m.envelope for m in landed]}"
    (message,) = landed
    assert message.id == message_id
    assert message.envelope["mailFrom"] == "alice@example.com"
    assert message.envelope["rcptTo"] == ["r@example.com"]
    expected, after = stored_from_wire(wire, "normalize")
    assert after == b""
    assert message.eml == expected
    assert b"MAIL FROM:<smuggled@evil.example>" in message.eml
    assert b"Subject: SMUGGLED" in message.eml


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS.keys()))
def test_fake_end_of_data_with_bare_lf_reject_policy(shared_gateway_reject_bare_lf, variant):
    # --bare-lf reject (Postfix `reject`): a bare LF anywhere in the data fails the message with
    # 550 5.5.2 after its real end; a variant without bare LF is accepted as content.
    gw = shared_gateway_reject_bare_lf
    before = gw.ids()
    wire, end_reply, quit_reply, rest = run_session(gw, variant, "one-write")
    check(quit_reply, 221, "2.0.0")
    assert rest == b""
    time.sleep(0.1)
    landed = gw.messages(exclude=before)
    if has_bare_lf(wire):
        check(end_reply, 550, "5.5.2")
        assert landed == []
    else:
        message_id = accepted_id(end_reply)
        assert [m.id for m in landed] == [message_id]
        assert landed[0].eml == stored_from_wire(wire, "reject")[0]


def test_bare_lf_command_with_reject_policy_is_refused_and_closed(shared_gateway_reject_bare_lf):
    with shared_gateway_reject_bare_lf.connect() as smtp:
        smtp.greeting()
        smtp.send(b"EHLO client.example\n")
        check(smtp.reply(), 500, "5.5.2")
        smtp.assert_closed()


def test_bare_lf_command_with_normalize_policy_is_accepted(shared_gateway):
    with shared_gateway.connect() as smtp:
        smtp.greeting()
        smtp.send(b"EHLO client.example\n")
        check(smtp.reply(), 250)
        smtp.send(b"NOOP\n")
        check(smtp.reply(), 250, "2.0.0")


def test_smuggling_across_two_transactions_in_one_write(shared_gateway):
    # A legitimate pipelined client sending two transactions back to back still gets two messages:
    # the real <CRLF>.<CRLF> ends each one.
    gw = shared_gateway
    before = gw.ids()
    first = b"Subject: one\r\n\r\nfirst\n.\nnot an end\r\n"
    second = b"Subject: two\r\n\r\nsecond\r\n"
    with gw.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        smtp.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.com>\r\nDATA\r\n" + first + b".\r\n"
                  b"MAIL FROM:<b@example.com>\r\nRCPT TO:<r@example.com>\r\nDATA\r\n" + second + b".\r\nQUIT\r\n")
        replies = smtp.replies(9)
        assert [r.code for r in replies] == [250, 250, 354, 250, 250, 250, 354, 250, 221]
        smtp.assert_closed()
    landed = sorted(gw.wait_for_messages(2, exclude=before), key=lambda m: m.envelope["mailFrom"])
    assert [m.envelope["mailFrom"] for m in landed] == ["a@example.com", "b@example.com"]
    assert landed[0].eml == first.replace(b"\n.\n", b"\r\n.\r\n")
    assert landed[1].eml == second
    assert CRLF + b"." + CRLF in landed[0].eml  # the bare-LF dot line survived as content


# ---------------------------------------------------------------------------------------------------
# Content that follows a REFUSED DATA (a sloppy client that does not wait for 354, RFC 2920 §3.1)


INJECTED = (b"Subject: looks harmless\r\n\r\n"
            b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
            b"From: evil@example.com\r\nSubject: INJECTED\r\n\r\ninjected body\r\n.\r\n")


HEADERLESS_INJECTED = (b"RCPT TO:<victim@example.com>\r\nDATA\r\n"
                       b"From: evil@example.com\r\nSubject: INJECTED\r\n\r\ninjected body\r\n.\r\n")


@pytest.mark.parametrize("content", [INJECTED, HEADERLESS_INJECTED], ids=["after-a-header", "first-line"])
def test_content_after_a_refused_data_is_never_delivered(shared_gateway, content):
    # The gateway serves clients that write message content before the 354 (smtp-behaviour #6). When such a
    # client's DATA is refused (here: its only RCPT had a syntax error), the content that follows is
    # already on the wire. It must not be run as commands: a message body that contains an SMTP
    # transaction would otherwise be delivered as a message of its own (here: to victim@example.com,
    # with the body "injected body"). Acceptable: the rest is discarded up to <CRLF>.<CRLF>, or the
    # session is closed (421/554, "synchronization error"); never a 250 2.1.5 / 354 / 250 2.0.0.
    # "first-line": a device that sends a body without headers, whose first line the attacker writes.
    gw = shared_gateway
    before = gw.ids()
    with gw.connect() as smtp:
        smtp.send(b"EHLO sloppy.example\r\nMAIL FROM:<device@example.com>\r\nRCPT TO:<not an address>\r\n"
                  b"DATA\r\n" + content + b"QUIT\r\n")
        smtp.greeting()
        check(smtp.reply(), 250)
        check(smtp.reply(), 250, "2.1.0")
        assert smtp.reply().code == 501
        data_reply = smtp.reply()
        assert data_reply.code in (503, 554), data_reply
        rest = smtp.read_to_eof()
    time.sleep(0.1)
    landed = gw.messages(exclude=before)
    served = [line for line in rest.split(b"\r\n") if line.startswith((b"250 2.1.5", b"354", b"250 2.0.0"))]
    assert not landed and not served, (
        f"content sent after a refused DATA was executed as commands: replies {rest!r}, "
        f"delivered {[(m.envelope, m.eml) for m in landed]}")


def test_exim_pattern_with_all_recipients_refused_swallows_the_chunk(shared_gateway):
    # Same situation with BDAT: the chunk's octets are read and discarded, never executed.
    gw = shared_gateway
    before = gw.ids()
    payload = INJECTED
    with gw.connect() as smtp:
        smtp.greeting()
        smtp.ehlo("exim.test")
        smtp.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<bad one>\r\nRCPT TO:<bad two>\r\n"
                  b"BDAT %d LAST\r\n" % len(payload) + payload + b"QUIT\r\n")
        check(smtp.reply(), 250, "2.1.0")
        assert smtp.reply().code == 501
        assert smtp.reply().code == 501
        check(smtp.reply(), 503, "5.5.1")
        check(smtp.reply(), 221, "2.0.0")
        smtp.assert_closed()
    time.sleep(0.1)
    assert gw.messages(exclude=before) == []


def test_content_after_data_refused_for_a_refused_mail_is_never_delivered(shared_gateway):
    # Same as above when MAIL itself was refused (SIZE over the limit): RCPT and DATA get 503, and the
    # content, which starts with a whole transaction of its own, must not be run.
    gw = shared_gateway
    before = gw.ids()
    content = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
               b"Subject: INJECTED\r\n\r\ninjected body\r\n.\r\n")
    with gw.connect() as smtp:
        smtp.send(b"EHLO sloppy.example\r\nMAIL FROM:<device@example.com> SIZE=999999999999\r\n"
                  b"RCPT TO:<r@example.com>\r\nDATA\r\n" + content + b"QUIT\r\n")
        smtp.greeting()
        check(smtp.reply(), 250)
        assert smtp.reply().code in (552, 501)
        check(smtp.reply(), 503, "5.5.1")
        assert smtp.reply().code in (503, 554)
        rest = smtp.read_to_eof()
    time.sleep(0.1)
    landed = gw.messages(exclude=before)
    served = [line for line in rest.split(b"\r\n") if line.startswith((b"250 2.1.", b"354", b"250 2.0.0"))]
    assert not landed and not served, f"content after a refused DATA was run: {rest!r}"
