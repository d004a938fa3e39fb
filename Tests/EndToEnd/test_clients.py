"""Real clients against the real binary: smtplib, swaks --pipeline, curl smtp://, a raw BDAT sender.

Each message must land in the outbox byte-identical to what the client put on the wire (after
dot-unstuffing), with the envelope in the .json record (smtp-behaviour §1).
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import subprocess
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

from e2e_support import CRLF, accepted_id, check, data_payload

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def assert_record(landed, *, mail_from, rcpt_to, helo="client.example", address="127.0.0.1", parameters=None):
    record = landed.record
    assert record["id"] == landed.id
    assert ISO_UTC.match(record["receivedAt"]), record["receivedAt"]
    received = datetime.fromisoformat(record["receivedAt"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - received) < timedelta(minutes=2), record["receivedAt"]
    assert record["client"] == {"address": address, "helo": helo}
    assert record["envelope"]["mailFrom"] == mail_from
    assert record["envelope"]["rcptTo"] == rcpt_to
    if parameters is not None:
        assert record["envelope"]["parameters"] == parameters


class RecordingSMTP(smtplib.SMTP):
    """smtplib as is, recording each command line and the message bytes handed to `data`."""

    def __init__(self, *args, **kwargs):
        self.commands: list[str] = []
        self.data_messages: list[bytes] = []
        super().__init__(*args, **kwargs)

    def putcmd(self, cmd, args=""):
        self.commands.append(f"{cmd} {args}".strip())
        super().putcmd(cmd, args)

    def data(self, msg):
        self.data_messages.append(msg)
        return super().data(msg)


def smtplib_stored(msg: bytes) -> bytes:
    """What smtplib's data() puts on the wire, unstuffed again: every line end made CRLF, ending in CRLF."""
    fixed = re.sub(rb"(?:\r\n|\n|\r(?!\n))", CRLF, msg)
    return fixed if fixed.endswith(CRLF) else fixed + CRLF


# ---------------------------------------------------------------------------------------------------
# Python smtplib (lower-case verbs, SIZE=, SMTPUTF8, BODY=8BITMIME)


def test_smtplib_lowercase_verbs_size_smtputf8_8bitmime(gateway):
    msg = EmailMessage()
    msg["From"] = "Jörg Müller <jörg@example.com>"
    msg["To"] = "Zoë <zoë@example.net>, plain@example.org"
    msg["Subject"] = "Grüße aus Köln ☃"
    msg.set_content("Hällo wörld ✓\n.a line that starts with a dot\n..two dots\n.\nend\n")
    msg.add_attachment(bytes(range(256)) * 4, maintype="application", subtype="octet-stream",
                       filename="blob.bin")

    with RecordingSMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=10) as client:
        refused = client.send_message(msg)
        assert refused == {}
        code, text = client.noop()
        assert (code, text) == (250, b"2.0.0 OK")

    mail_cmd = next(c for c in client.commands if c.lower().startswith("mail"))
    assert mail_cmd.startswith("mail FROM:<jörg@example.com>"), client.commands
    assert "SMTPUTF8" in mail_cmd and "BODY=8BITMIME" in mail_cmd and " size=" in mail_cmd
    assert [c.split(" ")[0] for c in client.commands] == ["ehlo", "mail", "rcpt", "rcpt", "data", "noop", "QUIT"]

    (landed,) = gateway.wait_for_messages(1)
    sent = client.data_messages[0]
    assert b"\xc3\xb6" in sent and b"\n.a line" in sent.replace(b"\r", b"")  # raw UTF-8, dot lines
    assert landed.eml == smtplib_stored(sent)
    assert_record(landed, mail_from="jörg@example.com", rcpt_to=["zoë@example.net", "plain@example.org"],
                  parameters={"SIZE": str(len(sent)), "SMTPUTF8": True, "BODY": "8BITMIME"})
    parsed = email.message_from_bytes(landed.eml, policy=email.policy.default)
    assert parsed["Subject"] == "Grüße aus Köln ☃"
    assert [p.get_content() for p in parsed.iter_attachments()] == [bytes(range(256)) * 4]


def test_smtplib_several_messages_one_session_and_null_sender(gateway):
    bodies = [
        b"Subject: one\r\n\r\nfirst\r\n",
        b"Subject: two\r\n\r\n.\r\n..\r\n.x\r\n\r\n",
        b"Subject: three\r\n\r\nno final newline",
    ]
    with RecordingSMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=10) as client:
        assert client.sendmail("a@example.com", ["r1@example.com"], bodies[0]) == {}
        assert client.sendmail("", ["bounces@example.com"], bodies[1]) == {}
        client.rset()
        assert client.sendmail("b@example.com", ["r2@example.com", "r3@example.com"], bodies[2],
                               mail_options=["BODY=7BIT"]) == {}
    assert "mail FROM:<> size=%d" % len(bodies[1]) in client.commands
    landed = gateway.wait_for_messages(3)
    assert [m.eml for m in landed] == [smtplib_stored(b) for b in bodies]
    assert_record(landed[0], mail_from="a@example.com", rcpt_to=["r1@example.com"],
                  parameters={"SIZE": str(len(bodies[0]))})
    assert_record(landed[1], mail_from="", rcpt_to=["bounces@example.com"])
    assert_record(landed[2], mail_from="b@example.com", rcpt_to=["r2@example.com", "r3@example.com"],
                  parameters={"SIZE": str(len(bodies[2])), "BODY": "7BIT"})


def test_smtplib_size_over_limit_refused_at_mail(start_gateway):
    gw = start_gateway("--max-message-size", "1000")
    with smtplib.SMTP(gw.host, gw.port, local_hostname="client.example", timeout=10) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "1000"
        try:
            client.sendmail("a@example.com", ["r@example.com"], b"x" * 1001)
        except smtplib.SMTPSenderRefused as error:
            assert error.smtp_code == 552 and error.smtp_error.startswith(b"5.3.4 "), error
        else:
            raise AssertionError("a 1001-octet message was not refused at MAIL with SIZE=1001")
        # The session goes on: a message of exactly the limit (998 + CRLF... = 1000 octets stored) passes.
        body = b"y" * 998 + CRLF
        assert client.sendmail("a@example.com", ["r@example.com"], body) == {}
    (landed,) = gw.wait_for_messages(1)
    assert landed.eml == body


# ---------------------------------------------------------------------------------------------------
# swaks --pipeline with an attachment


def swaks_data_from_transcript(transcript: bytes) -> bytes:
    """The DATA bytes swaks sent, from its transcript (` -> ` lines between the 354 and the lone dot)."""
    lines = transcript.split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"<-  354"))
    sent = []
    for line in lines[start + 1:]:
        if not line.startswith(b" -> "):
            continue
        text = line[4:]
        if text.endswith(b"\r"):  # swaks prints each data line with the CRLF it sent
            text = text[:-1]
        if text == b".":
            break
        sent.append(text)
    return CRLF.join(sent) + CRLF + b".\r\n"


def test_swaks_pipeline_with_pdf_attachment(gateway, tmp_path):
    attachment = tmp_path / "report.pdf"
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"
    attachment.write_bytes(pdf)
    result = subprocess.run(
        ["swaks", "--server", f"{gateway.host}:{gateway.port}", "--ehlo", "client.example",
         "--from", "s@example.com", "--to", "a@example.com,b@example.com", "--pipeline",
         "--attach-type", "application/pdf", "--attach", f"@{attachment}",
         "--body", "h\u00e9llo 8-bit body\n.leading dot\nbye",
         "--header", "Subject: =?UTF-8?B?w6l0w6k=?=", "--timeout", "10"],
        capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    transcript = result.stdout + result.stderr
    assert result.returncode == 0, transcript.decode("utf-8", "replace")
    text = transcript.decode("utf-8", "replace")

    # swaks really pipelined: MAIL, RCPT, RCPT, DATA went before any of their replies.
    exchange = [line for line in text.splitlines() if line.startswith((" -> ", "<-  "))]
    mail_at = next(i for i, line in enumerate(exchange) if line.startswith(" -> MAIL FROM:"))
    assert exchange[mail_at:mail_at + 8] == [
        " -> MAIL FROM:<s@example.com>", " -> RCPT TO:<a@example.com>", " -> RCPT TO:<b@example.com>",
        " -> DATA", "<-  250 2.1.0 Sender OK", "<-  250 2.1.5 Recipient OK", "<-  250 2.1.5 Recipient OK",
        "<-  354 Start mail input; end with <CRLF>.<CRLF>"], exchange
    match = re.search(r"^<-  250 2\.0\.0 OK (\S+)$", text, re.M)
    assert match, text
    assert re.search(r"^<-  221 2\.0\.0 ", text, re.M), text

    (landed,) = gateway.wait_for_messages(1)
    assert landed.id == match.group(1)
    wire = swaks_data_from_transcript(transcript)
    assert b"..leading dot" in wire  # swaks dot-stuffed
    assert landed.eml + b".\r\n" == wire.replace(b"\r\n..", b"\r\n.")
    assert_record(landed, mail_from="s@example.com", rcpt_to=["a@example.com", "b@example.com"], parameters={})
    parsed = email.message_from_bytes(landed.eml, policy=email.policy.default)
    (part,) = list(parsed.iter_attachments())
    assert part.get_content_type() == "application/pdf"
    assert part.get_filename() == "report.pdf"
    assert part.get_content() == pdf
    assert "h\u00e9llo 8-bit body\r\n.leading dot\r\nbye".encode() in landed.eml


# ---------------------------------------------------------------------------------------------------
# curl smtp:// (the URL path is the EHLO name; two --mail-rcpt)


def run_curl(gw, upload, *extra):
    return subprocess.run(
        ["curl", "-sS", "-v", "--max-time", "20", f"smtp://{gw.host}:{gw.port}/client.example",
         "--mail-from", "sender@example.com", "--mail-rcpt", "first@example.com",
         "--mail-rcpt", "second@example.net", "-T", str(upload), *extra],
        capture_output=True, stdin=subprocess.DEVNULL, timeout=30)


def test_curl_two_recipients(gateway, tmp_path):
    upload = tmp_path / "msg.eml"
    content = (b"From: sender@example.com\r\nTo: first@example.com, second@example.net\r\n"
               b"Subject: via curl\r\n\r\nline one\r\n.line starting with a dot\r\n.\r\n\r\n8-bit: \xc3\xa9\r\n")
    upload.write_bytes(content)
    result = run_curl(gateway, upload)
    log = result.stderr.decode("utf-8", "replace").replace("\r\n", "\n")
    assert result.returncode == 0, log
    assert "> EHLO client.example" in log
    assert f"> MAIL FROM:<sender@example.com> SIZE={len(content)}" in log
    replies = [r for r in re.findall(r"^< (\d{3}[ -].*)$", log, re.M) if not r.startswith("250-")]
    assert replies[:6] == [
        "220 localhost ESMTP acs-smtp-gateway ready", "250 HELP", "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK", "250 2.1.5 Recipient OK", "354 Start mail input; end with <CRLF>.<CRLF>"], log
    match = re.search(r"^< 250 2\.0\.0 OK (\S+)", log, re.M)
    assert match, log
    (landed,) = gateway.wait_for_messages(1)
    assert landed.id == match.group(1)
    assert landed.eml == content
    assert_record(landed, mail_from="sender@example.com", rcpt_to=["first@example.com", "second@example.net"],
                  parameters={"SIZE": str(len(content))})


def test_curl_bare_lf_upload_is_normalized(gateway, tmp_path):
    # curl sends a LF-only file as is, then "\r\n.\r\n" (the file does not end in CRLF). The default
    # bare-LF policy stores each bare LF as CRLF; the dot line after a bare LF is content.
    upload = tmp_path / "lf.eml"
    content = b"Subject: lf only\n\nbody\n.\nstill body\n"
    upload.write_bytes(content)
    result = run_curl(gateway, upload)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    (landed,) = gateway.wait_for_messages(1)
    assert landed.eml == content.replace(b"\n", CRLF) + CRLF


# ---------------------------------------------------------------------------------------------------
# A raw BDAT sender (RFC 3030; Exim is the real-world BDAT client, smtp-behaviour §1)


BDAT_MESSAGE = (b"From: s@example.com\r\nSubject: chunked\r\n\r\n"
                b".not stuffed in BDAT\r\n.\r\n\r\n.\r\nbinary \x00\x01\xff bytes and a bare \r CR\r\n"
                b"last line\r\n")


def test_bdat_several_chunks_then_bdat_0_last(gateway):
    cuts = [0, 7, 8, 41, 42, 60, 100, len(BDAT_MESSAGE)]
    chunks = [BDAT_MESSAGE[a:b] for a, b in zip(cuts, cuts[1:])]
    with gateway.connect() as smtp:
        smtp.greeting()
        assert "CHUNKING" in smtp.ehlo().lines
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        for chunk in chunks:
            smtp.send(b"BDAT %d\r\n" % len(chunk) + chunk)
            check(smtp.reply(), 250, "2.0.0")
        smtp.send(b"BDAT 0 LAST\r\n")
        message_id = accepted_id(smtp.reply())
        check(smtp.cmd("QUIT"), 221, "2.0.0")
        smtp.assert_closed()
    (landed,) = gateway.wait_for_messages(1)
    assert landed.id == message_id
    assert landed.eml == BDAT_MESSAGE
    assert_record(landed, mail_from="s@example.com", rcpt_to=["r@example.com"], parameters={})


def test_bdat_many_small_chunks_pipelined(gateway):
    chunks = [BDAT_MESSAGE[i:i + 3] for i in range(0, len(BDAT_MESSAGE), 3)]
    wire = b"MAIL FROM:<s@example.com>\r\nRCPT TO:<r@example.com>\r\n"
    for index, chunk in enumerate(chunks):
        last = b" LAST" if index == len(chunks) - 1 else b""
        wire += b"BDAT %d%s\r\n" % (len(chunk), last) + chunk
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        smtp.send(wire)
        check(smtp.reply(), 250, "2.1.0")
        check(smtp.reply(), 250, "2.1.5")
        for _ in chunks[:-1]:
            check(smtp.reply(), 250, "2.0.0")
        message_id = accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.id == message_id
    assert landed.eml == BDAT_MESSAGE


def test_bdat_exim_one_write_mail_rcpt_rcpt_bdat_last_quit(gateway):
    # smtp-behaviour #6: EHLO, then MAIL+RCPT+RCPT+BDAT n LAST+<n bytes>+QUIT in ONE write.
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo("exim.test")
        smtp.send(b"MAIL FROM:<s@example.com> SIZE=%d\r\nRCPT TO:<r1@example.com>\r\nRCPT TO:<r2@example.com>\r\n"
                  b"BDAT %d LAST\r\n" % (len(BDAT_MESSAGE), len(BDAT_MESSAGE)) + BDAT_MESSAGE + b"QUIT\r\n")
        check(smtp.reply(), 250, "2.1.0")
        check(smtp.reply(), 250, "2.1.5")
        check(smtp.reply(), 250, "2.1.5")
        message_id = accepted_id(smtp.reply())
        check(smtp.reply(), 221, "2.0.0")
        smtp.assert_closed()
    (landed,) = gateway.wait_for_messages(1)
    assert landed.id == message_id
    assert landed.eml == BDAT_MESSAGE
    assert_record(landed, mail_from="s@example.com", rcpt_to=["r1@example.com", "r2@example.com"],
                  helo="exim.test", parameters={"SIZE": str(len(BDAT_MESSAGE))})


def test_data_after_bdat_is_a_sequence_error(gateway):
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        smtp.send(b"BDAT 5\r\nhello")
        check(smtp.reply(), 250, "2.0.0")
        check(smtp.cmd("DATA"), 503, "5.5.1")
        smtp.send(b"BDAT 8 LAST\r\n world\r\n")
        accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.eml == b"hello world\r\n"


def test_bdat_oversize_chunk_is_read_and_refused_then_session_usable(start_gateway):
    gw = start_gateway("--max-message-size", "1000")
    with gw.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        # 1001 octets, containing text that looks like commands: it must be swallowed, not executed.
        payload = (b"QUIT\r\nMAIL FROM:<evil@example.com>\r\n" * 40)[:1001]
        smtp.send(b"BDAT 1001 LAST\r\n" + payload)
        check(smtp.reply(), 552, "5.3.4")
        check(smtp.cmd("NOOP"), 250, "2.0.0")
        check(smtp.cmd("MAIL FROM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5")
        smtp.send(b"BDAT 1000 LAST\r\n" + b"z" * 998 + CRLF)
        accepted_id(smtp.reply())
    (landed,) = gw.wait_for_messages(1)
    assert landed.eml == b"z" * 998 + CRLF


# ---------------------------------------------------------------------------------------------------
# A raw DATA sender: dot-stuffing round trip


def test_raw_data_dot_stuffing_round_trip(gateway):
    content = b"Subject: dots\r\n\r\n.\r\n..\r\n...x\r\n. \r\nend\r\n"
    with gateway.connect() as smtp:
        smtp.greeting()
        smtp.ehlo()
        check(smtp.cmd("mAiL fRoM:<s@example.com>"), 250, "2.1.0")
        check(smtp.cmd("rCpT tO:<r@example.com>"), 250, "2.1.5")
        check(smtp.cmd("dAtA"), 354)
        smtp.send(data_payload(content))
        accepted_id(smtp.reply())
    (landed,) = gateway.wait_for_messages(1)
    assert landed.eml == content
