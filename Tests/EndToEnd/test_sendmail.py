"""The sendmail door end to end: real local callers (PHP's mail(), bsd-mailx, cron's command line) → the
`sendmail` command → the daemon's local socket → the real ACS emulator.

PHP and mailx run `/usr/sbin/sendmail` (their default, compiled in). As root, each runs in a private mount
namespace (`unshare -m`) where a tmpfs over /usr/sbin holds a `sendmail` link to the binary under test, so the
host's own MTA (if any) is neither used nor touched. Without that privilege, PHP is given the same command line
with `-d sendmail_path=` and the mailx test is skipped, each with a visible reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SENDER = "DoNotReply@example.com"
HOST = socket.gethostname()


@pytest.fixture
def door(start_gateway, start_emulator, certificates, gateway_bin):
    """Starts an emulator and a gateway with a local socket and aliases; returns a Door."""
    directories = []

    def start(*gateway_args: str, emulator_args: tuple[str, ...] = (), sender: str | None = SENDER) -> Door:
        # Its own directory, traversable by every user (pytest's tmp_path is 0700): the spoofing test runs the
        # command as `nobody`.
        directory = Path(tempfile.mkdtemp(prefix="acsgw-sendmail-"))
        directory.chmod(0o755)
        directories.append(directory)
        emulator = start_emulator(*emulator_args)
        socket_path = directory / "submit.sock"
        gateway = start_gateway(
            *(["--sender-address", sender] if sender else []), "--acs-ca-file", str(certificates / "ca.pem"),
            "--sendmail-socket", str(socket_path), "--alias", "root=ops@example.com",
            "--alias", "www-data=webmaster@example.com", *gateway_args,
            env={"ACS_CONNECTION_STRING": emulator.connection_string})
        return Door(gateway, emulator, socket_path, directory, gateway_bin)

    yield start
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


class Door:
    def __init__(self, gateway, emulator, socket_path: Path, directory: Path, binary: Path):
        self.gateway = gateway
        self.emulator = emulator
        self.socket = socket_path
        self.directory = directory
        self.binary = binary
        links = directory / "bin"
        links.mkdir()
        os.symlink(binary, links / "sendmail")
        self.sendmail_link = links / "sendmail"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "ACSGW_SENDMAIL_SOCKET": str(self.socket), "ACSGW_CONFIG": "none", **extra}

    def sendmail(self, *args: str, message: bytes, user: str | None = None, env: dict | None = None,
                 via_link: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.sendmail_link), *args] if via_link else [str(self.binary), "sendmail", *args]
        if user:
            command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
        return subprocess.run(command, input=message, capture_output=True, env=env or self.env(), timeout=60)

    def as_system_mta(self, command: list[str]) -> list[str]:
        """`command` in a mount namespace whose /usr/sbin/sendmail is the binary under test."""
        script = ('mount -t tmpfs tmpfs /usr/sbin && ln -s "$GATEWAY" /usr/sbin/sendmail && exec "$@"')
        return ["unshare", "-m", "sh", "-c", script, "sh", *command]

    def audit_lines(self) -> list[str]:
        return [line for line in self.gateway.stderr().splitlines() if "msg=message " in line]


def private_mounts_work() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def only_message(emulator) -> dict:
    [recorded] = emulator.messages()
    return recorded["request"]


# --------------------------------------------------------------------------------------------------
# Real callers


@pytest.mark.skipif(not shutil.which("php"), reason="php-cli is not installed (.ci/install-packages test)")
def test_php_mail_with_its_default_sendmail_path_delivers_and_a_down_daemon_makes_it_return_false(door):
    d = door()
    code = ('var_dump(mail("Ann <ann@example.net>", "Report \\u{00e9}t\\u{00e9}", "Line one\\nLine two\\n", '
            '"X-App-Trace: 42\\r\\nCc: root"));')
    if private_mounts_work():
        command = d.as_system_mta(["php", "-r", code])  # php.ini's default: sendmail -t -i
    else:
        print("NOTICE: no private mount namespace (not root?): PHP gets sendmail_path with the same flags")
        command = ["php", "-d", f"sendmail_path={d.sendmail_link} -t -i", "-r", code]
    result = subprocess.run(command, capture_output=True, env=d.env(GATEWAY=str(d.binary)), timeout=60)
    assert result.stdout.strip() == b"bool(true)", result.stderr
    request = only_message(d.emulator)
    assert request["content"]["subject"] == "Report été"
    assert request["content"]["plainText"].replace("\r\n", "\n").startswith("Line one\nLine two\n")
    assert request["recipients"]["to"] == [{"address": "ann@example.net", "displayName": "Ann"}]
    assert request["recipients"]["cc"] == [{"address": "ops@example.com"}], "Cc: root keeps its Cc place"
    assert request["headers"]["X-App-Trace"] == "42"

    d.gateway.stop()
    result = subprocess.run(command, capture_output=True, env=d.env(GATEWAY=str(d.binary)), timeout=60)
    assert result.stdout.strip() == b"bool(false)"
    assert len(d.emulator.messages()) == 1


@pytest.mark.skipif(not shutil.which("bsd-mailx"), reason="bsd-mailx is not installed (.ci/install-packages test)")
def test_mailx_to_root_reaches_the_alias(door):
    if not private_mounts_work():
        pytest.skip("bsd-mailx always runs /usr/sbin/sendmail: needs root and a private mount namespace")
    d = door()
    command = d.as_system_mta(["bsd-mailx", "-s", "disk report", "root"])
    result = subprocess.run(command, input=b"/dev/sda1 91% full\n", capture_output=True,
                            env=d.env(GATEWAY=str(d.binary)), timeout=60)
    assert result.returncode == 0, result.stderr
    request = only_message(d.emulator)
    assert request["content"]["subject"] == "disk report"
    assert request["recipients"]["to"] == [{"address": "ops@example.com"}]
    assert "91% full" in request["content"]["plainText"]


def test_a_cron_message_gets_date_and_message_id_and_the_alias(door):
    d = door()
    # What Debian's cron writes, and how it calls sendmail (cron/do_command.c).
    message = (f"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@{HOST}> /usr/local/bin/backup\n"
               "Content-Type: text/plain; charset=UTF-8\nX-Cron-Env: <SHELL=/bin/sh>\n\nbackup done\n").encode()
    result = d.sendmail("-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root", message=message)
    assert result.returncode == 0, result.stderr
    request = only_message(d.emulator)
    assert request["recipients"] == {"to": [{"address": "ops@example.com"}]}
    assert request["senderAddress"] == SENDER
    assert "replyTo" not in request, "root with a domain ACS refuses is dropped, not sent"
    assert re.fullmatch(r"<[0-9a-f-]{36}@" + re.escape(HOST) + ">", request["headers"]["Message-ID"])
    [copy] = d.gateway.wait_for_messages(1)
    header = copy.eml.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"\r\nDate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}", header)
    assert b"\r\nMessage-ID: <" in header
    assert b"\n" not in header.replace(b"\r\n", b""), "bare LF input became CRLF"


def test_t_with_bcc_delivers_to_the_bcc_recipient_and_removes_the_header(door):
    d = door()
    message = (b"From: App <app@legacy.example>\nTo: Ann <ann@example.net>\nBcc: hidden@example.org\n"
               b"Subject: minutes\n\nsee attached\n.\nstill the body\n")
    result = d.sendmail("-t", "-i", message=message)
    assert result.returncode == 0, result.stderr
    request = only_message(d.emulator)
    assert request["recipients"] == {"to": [{"address": "ann@example.net", "displayName": "Ann"}],
                                     "bcc": [{"address": "hidden@example.org"}]}
    assert "still the body" in request["content"]["plainText"], "-i: a lone dot is text"
    [copy] = d.gateway.wait_for_messages(1)
    assert b"hidden@" not in copy.eml and b"\r\nBcc:" not in copy.eml


def test_bs_is_a_whole_smtp_session_on_stdin_and_stdout(door):
    d = door()
    session = (b"EHLO app.example\r\nMAIL FROM:<app@legacy.example>\r\nRCPT TO:<www-data>\r\nDATA\r\n"
               b"Subject: over -bs\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    result = d.sendmail("-bs", message=session)
    assert result.returncode == 0, result.stderr
    codes = [line[:3] for line in result.stdout.decode().split("\r\n") if line[3:4] == " "]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"], result.stdout
    assert only_message(d.emulator)["recipients"]["bcc"] == [{"address": "webmaster@example.com"}]


# --------------------------------------------------------------------------------------------------
# Exit statuses, each caused by its situation


def test_exit_0_when_accepted_and_75_when_the_daemon_is_unreachable(door):
    d = door()
    assert d.sendmail("ann@example.net", message=b"Subject: a\n\nb\n").returncode == 0
    result = d.sendmail("ann@example.net", message=b"Subject: a\n\nb\n",
                        env=d.env(ACSGW_SENDMAIL_SOCKET=str(d.directory / "nobody-listens.sock")))
    assert result.returncode == 75
    assert b"nothing was sent, try again later" in result.stderr
    assert len(d.emulator.messages()) == 1


def test_exit_75_on_a_temporary_refusal(door):
    d = door("--retry-budget", "2", "--attempt-timeout", "1")
    d.emulator.faults({"status": 503, "count": 100})
    result = d.sendmail("ann@example.net", message=b"Subject: a\n\nb\n")
    assert result.returncode == 75, result.stderr
    assert re.search(rb"sendmail: the message: 4\d\d ", result.stderr)
    assert result.stderr.count(b"\n") == 1, "one line naming the cause"


def test_exit_67_for_a_local_name_without_an_alias_and_nothing_is_sent(door):
    d = door()
    result = d.sendmail("ann@example.net", "nosuchuser", message=b"Subject: a\n\nb\n")
    assert result.returncode == 67
    assert b'550 5.1.1 No alias for local recipient <nosuchuser>: add "nosuchuser: address" under aliases:' \
        in result.stderr
    assert d.emulator.messages() == [], "a refused recipient stops the whole submission"


def test_exit_65_for_a_message_too_large(door):
    d = door("--max-message-size", "2000")
    result = d.sendmail("ann@example.net", message=b"Subject: big\n\n" + b"x" * 70 + b"\n" * 100 + b"y" * 3000)
    assert result.returncode == 65, result.stderr
    assert b"552 5.3.4" in result.stderr


def test_exit_69_for_a_sender_acs_may_not_use(door):
    d = door("--verified-domain", "example.com", sender=None)
    result = d.sendmail("-f", "app@unverified.example", "ann@example.net",
                        message=b"From: app@unverified.example\nSubject: a\n\nb\n")
    assert result.returncode == 69, result.stderr
    assert b"5.7." in result.stderr


def test_exit_64_for_an_unknown_flag_or_no_recipient(door):
    d = door()
    result = d.sendmail("-k", "ann@example.net", message=b"x\n")
    assert result.returncode == 64 and b"unknown option -k" in result.stderr
    result = d.sendmail("-i", message=b"Subject: a\n\nb\n")
    assert result.returncode == 64 and b"no recipients" in result.stderr
    assert d.emulator.messages() == []


def test_exit_66_when_standard_input_cannot_be_read(door):
    d = door()
    directory = os.open("/", os.O_RDONLY)  # read(2) on a directory fails with EISDIR
    try:
        result = subprocess.run([str(d.sendmail_link), "ann@example.net"], stdin=directory, capture_output=True,
                                env=d.env(), timeout=60)
    finally:
        os.close(directory)
    assert result.returncode == 66 and b"cannot read the message on standard input" in result.stderr
    assert d.emulator.messages() == []


def test_the_subcommand_and_the_link_are_the_same_command(door):
    d = door()
    result = d.sendmail("-i", "ann@example.net", message=b"Subject: sub\n\nb\n", via_link=False)
    assert result.returncode == 0, result.stderr
    assert only_message(d.emulator)["content"]["subject"] == "sub"


# --------------------------------------------------------------------------------------------------
# Who sent it: the kernel's word, not the caller's


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as another user")
def test_the_audit_line_names_the_local_user_from_the_kernel_and_cannot_be_spoofed(door):
    d = door()
    spoof = d.env(USER="root", LOGNAME="root", MAILUSER="root")
    result = d.sendmail("ann@example.net", message=b"Subject: from nobody\n\nb\n", user="65534", env=spoof)
    assert result.returncode == 0, result.stderr
    [line] = d.audit_lines()
    assert "smtp.local_user=nobody" in line and "smtp.local_uid=65534" in line, line
    request = only_message(d.emulator)
    # The added From is the kernel's user too (it becomes the reply-to when ACS can take it).
    [copy] = d.gateway.wait_for_messages(1)
    assert f"From: nobody <nobody@{HOST}>".encode() in copy.eml, copy.eml[:300]
    assert request["senderAddress"] == SENDER

    # A network client that claims to be root is still a network client.
    import smtplib
    with smtplib.SMTP(d.gateway.host, d.gateway.port, local_hostname="localhost", timeout=30) as smtp:
        smtp.sendmail(f"root@{HOST}", ["ann@example.net"], b"From: root\r\nSubject: claims\r\n\r\nb\r\n")
    lines = d.audit_lines()
    assert len(lines) == 2
    assert "smtp.local_user" not in lines[1] and "smtp.client=127.0.0.1:" in lines[1]


def test_the_socket_is_connectable_by_every_user_and_removed_at_stop(door):
    d = door()
    assert d.socket.is_socket()
    assert d.socket.stat().st_mode & 0o777 == 0o666
    d.gateway.stop()
    assert not d.socket.exists()


def test_in_custody_the_spool_record_keeps_the_local_user_and_mailq_lists_it(door):
    d = door("--delivery-mode", "queue", "--spool-directory", str(Path(tempfile.mkdtemp(prefix="acsgw-spool-"))))
    d.emulator.faults({"status": 503, "count": 1000})
    result = d.sendmail("-i", "ann@example.net", message=b"Subject: kept\n\nb\n")
    assert result.returncode == 0, result.stderr
    spool = Path(d.gateway.extra_args[d.gateway.extra_args.index("--spool-directory") + 1])
    [record_file] = (spool / "queue").glob("*.json")
    import json
    record = json.loads(record_file.read_text())
    assert record["client"]["address"] == "local"
    assert record["client"]["local"]["uid"] == os.getuid()

    config = d.directory / "gateway.conf"
    config.write_text(f"spool:\n  directory: {spool}\n")
    os.symlink(d.binary, d.directory / "bin" / "mailq")
    listed = subprocess.run([str(d.directory / "bin" / "mailq"), "-C", str(config)], capture_output=True,
                            env=d.env(), timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert record["id"].encode() in listed.stdout
    assert record["id"].encode() in d.sendmail("-bp", "-C", str(config), message=b"").stdout

    os.symlink(d.binary, d.directory / "bin" / "newaliases")
    note = subprocess.run([str(d.directory / "bin" / "newaliases")], capture_output=True, env=d.env(), timeout=60)
    assert note.returncode == 0 and b"aliases: section of gateway.conf" in note.stdout


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as another user")
def test_a_socket_directory_the_daemon_makes_is_reachable_by_every_user_whatever_its_umask(door):
    # The systemd unit runs the daemon with UMask=0077; mkdir(2) would make the directory 0700.
    base = Path(tempfile.mkdtemp(prefix="acsgw-umask-"))
    base.chmod(0o755)
    socket_path = base / "made-by-the-daemon" / "submit.sock"
    previous = os.umask(0o077)
    try:
        d = door("--sendmail-socket", str(socket_path))
    finally:
        os.umask(previous)
    try:
        assert socket_path.parent.stat().st_mode & 0o777 == 0o755
        result = d.sendmail("ann@example.net", message=b"Subject: a\n\nb\n", user="65534",
                            env=d.env(ACSGW_SENDMAIL_SOCKET=str(socket_path)))
        assert result.returncode == 0, result.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
