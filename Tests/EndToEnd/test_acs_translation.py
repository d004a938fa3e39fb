"""MIME → ACS translation end to end: a realistic message through the running gateway; the outbox's `acsRequest` is the
exact ACS request, and what the translation refuses gets its 5xx over SMTP."""

from __future__ import annotations

import base64
import json
import smtplib
from email.message import EmailMessage

import pytest

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005"
    "0001ff5d6bd1b90000000049454e44ae426082")
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def rich_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Report Robot <robot@example.com>"
    message["To"] = "Ann Example <ann@example.net>"
    message["Cc"] = '"Cid, the Reviewer" <cid@example.org>'
    message["Subject"] = "Grüße ☃ monthly report"
    message["Message-ID"] = "<report-42@example.com>"
    message["X-Report-Run"] = "2026-11"
    message.set_content("Plain body, 100 % readable.\n")
    message.add_alternative('<html><body><p>Hello</p><img src="cid:logo@example.com"></body></html>\n',
                            subtype="html")
    message.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo@example.com>")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    return message


def test_multipart_with_inline_image_pdf_bcc_and_encoded_subject(gateway):
    with smtplib.SMTP(gateway.host, gateway.port, local_hostname="client.example", timeout=10) as smtp:
        refused = smtp.send_message(
            rich_message(), from_addr="robot@example.com",
            to_addrs=["ann@example.net", "cid@example.org", "hidden@example.com"])
    assert refused == {}
    [landed] = gateway.wait_for_messages(1)
    # The subject went over the wire RFC 2047-encoded; the request has it decoded.
    assert b"=?utf-8?" in landed.eml.lower()
    assert landed.record["acsRequest"] == {
        "senderAddress": "robot@example.com",
        "content": {
            "subject": "Grüße ☃ monthly report",
            "plainText": "Plain body, 100 % readable.\r\n",
            "html": '<html><body><p>Hello</p><img src="cid:logo@example.com"></body></html>\r\n',
        },
        "recipients": {
            "to": [{"address": "ann@example.net", "displayName": "Ann Example"}],
            "cc": [{"address": "cid@example.org", "displayName": "Cid, the Reviewer"}],
            "bcc": [{"address": "hidden@example.com"}],
        },
        "attachments": [
            {"name": "attachment-1.png", "contentType": "image/png",
             "contentInBase64": base64.b64encode(PNG).decode(), "contentId": "logo@example.com"},
            {"name": "report.pdf", "contentType": "application/pdf",
             "contentInBase64": base64.b64encode(PDF).decode()},
        ],
        "headers": {"Message-ID": "<report-42@example.com>", "X-Report-Run": "2026-11"},
    }
    # The Bcc recipient is in the envelope record too, and nowhere in the message's headers.
    assert landed.envelope["rcptTo"] == ["ann@example.net", "cid@example.org", "hidden@example.com"]
    assert b"hidden@example.com" not in landed.eml


def test_acs_request_in_the_record_is_the_exact_compact_body(gateway):
    with smtplib.SMTP(gateway.host, gateway.port, timeout=10) as smtp:
        smtp.sendmail("a@example.com", ["b@example.net"], b"From: a@example.com\r\nTo: b@example.net\r\n"
                      b"Subject: s\r\n\r\nbody\r\n")
    [landed] = gateway.wait_for_messages(1)
    raw = (gateway.outbox / f"{landed.id}.json").read_text()
    spliced = raw[raw.index('"acsRequest" : ') + len('"acsRequest" : '):].rstrip().rstrip("}").rstrip()
    assert "\n" not in spliced  # compact, exactly as it would be sent
    assert json.loads(spliced) == landed.record["acsRequest"]
    assert json.loads(spliced)["content"] == {"subject": "s", "plainText": "body\r\n"}


def test_sender_outside_the_verified_domains_is_refused_with_550(start_gateway):
    gateway = start_gateway("--verified-domain", "verified.example")
    with smtplib.SMTP(gateway.host, gateway.port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@elsewhere.example", ["b@example.net"],
                          b"From: a@elsewhere.example\r\nSubject: s\r\n\r\nbody\r\n")
        assert refused.value.smtp_code == 550
        assert refused.value.smtp_error.startswith(b"5.7.1 ")
        # The session goes on.
        smtp.sendmail("a@verified.example", ["b@example.net"], b"From: a@verified.example\r\nSubject: s\r\n\r\nok\r\n")
    assert len(gateway.wait_for_messages(1)) == 1


def test_configured_sender_replaces_from_which_becomes_reply_to(start_gateway):
    gateway = start_gateway("--sender-address", "DoNotReply@acs.example")
    with smtplib.SMTP(gateway.host, gateway.port, timeout=10) as smtp:
        smtp.sendmail("app@legacy.example", ["b@example.net"],
                      b"From: Legacy App <app@legacy.example>\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n")
    [landed] = gateway.wait_for_messages(1)
    request = landed.record["acsRequest"]
    assert request["senderAddress"] == "DoNotReply@acs.example"
    assert request["replyTo"] == [{"address": "app@legacy.example", "displayName": "Legacy App"}]


def test_request_over_the_acs_limit_is_refused_with_552_stating_the_size(start_gateway):
    # With a sender policy the outbox is a strict dry run: it refuses what ACS delivery would refuse.
    gateway = start_gateway("--max-request-size", "2000", "--verified-domain", "example.com")
    with smtplib.SMTP(gateway.host, gateway.port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@example.com", ["b@example.net"],
                          b"From: a@example.com\r\nSubject: s\r\n\r\n" + b"x" * 3000 + b"\r\n")
    assert refused.value.smtp_code == 552
    assert refused.value.smtp_error.startswith(b"5.3.4 ")
    assert b"2000" in refused.value.smtp_error
    assert gateway.messages() == []


def test_without_a_sender_policy_the_outbox_keeps_everything_and_records_the_refusal(gateway):
    # A bounce (null sender, no From) cannot be sent through ACS, but the default outbox never loses it.
    with smtplib.SMTP(gateway.host, gateway.port, timeout=10) as smtp:
        smtp.sendmail("", ["b@example.net"], b"Subject: bounce\r\n\r\nundeliverable\r\n")
    [landed] = gateway.wait_for_messages(1)
    assert "acsRequest" not in landed.record
    assert landed.record["acsRejection"].startswith("550 5.7.1 ")
