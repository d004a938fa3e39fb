"""`make install`, `make uninstall` and `make deb` (Makefile, README.md "Installing").

Each test installs into a temporary DESTDIR and checks the tree exactly: files, modes, the unit's ExecStart=,
no secret anywhere, the options example, and that an administrator's edits survive a second install and an
uninstall. The release build is skipped with INSTALL_BINARY/INSTALL_EMULATOR pointing at the binaries the
rest of the suite uses ($GATEWAY_BIN, $EMULATOR_BIN), so these tests take seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from acs_support import emulator_binary
from e2e_support import REPO, gateway_binary

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

EXAMPLE = REPO / "etc" / "default" / "acs-smtp-gateway"
SECRET_PATTERNS = [
    re.compile(rb"accesskey=[A-Za-z0-9+/=]{16,}", re.IGNORECASE),  # a real connection string's key
    re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def make(*args: str, **variables: str) -> subprocess.CompletedProcess:
    binaries = {"INSTALL_BINARY": str(gateway_binary()), "INSTALL_EMULATOR": str(emulator_binary())}
    for binary in binaries.values():
        if not Path(binary).is_file():
            pytest.fail(f"{binary} not found: run `swift build` first or set GATEWAY_BIN/EMULATOR_BIN", pytrace=False)
    command = ["make", "--no-print-directory", "-C", str(REPO), *args]
    command += [f"{key}={value}" for key, value in {**binaries, **variables}.items()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def tree(root: Path) -> dict[str, str]:
    """Every path under root (relative, with a trailing / for directories) and its permission bits."""
    entries = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        name = "/" + str(path.relative_to(root)) + ("/" if stat.S_ISDIR(mode) else "")
        assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), f"unexpected file type: {name}"
        entries[name] = oct(stat.S_IMODE(mode))
    return entries


def expected_tree(prefix: str) -> dict[str, str]:
    entries = {
        "/etc/": "0o755",
        "/etc/default/": "0o755",
        "/etc/default/acs-smtp-gateway": "0o644",
        "/etc/acs-smtp-gateway/": "0o750",
    }
    parts = Path(prefix).parts[1:]
    for depth in range(1, len(parts) + 1):
        entries["/" + "/".join(parts[:depth]) + "/"] = "0o755"
    for directory in ("bin/", "lib/", "lib/systemd/", "lib/systemd/system/"):
        entries[f"{prefix}/{directory}"] = "0o755"
    entries[f"{prefix}/bin/acs-smtp-gateway"] = "0o755"
    entries[f"{prefix}/bin/acs-email-emulator"] = "0o755"
    entries[f"{prefix}/lib/systemd/system/acs-smtp-gateway.service"] = "0o644"
    entries[f"{prefix}/lib/systemd/system/acs-smtp-gateway.socket"] = "0o644"
    return entries


def check_installed(root: Path, prefix: str) -> None:
    # The umask of whoever runs the tests decides the modes of parent directories install -D creates;
    # everything the Makefile sets explicitly is checked exactly.
    assert tree(root).keys() == expected_tree(prefix).keys()
    actual, wanted = tree(root), expected_tree(prefix)
    explicit = [name for name in wanted if not name.endswith("/") or name == "/etc/acs-smtp-gateway/"]
    assert {name: actual[name] for name in explicit} == {name: wanted[name] for name in explicit}

    assert (root / prefix.lstrip("/") / "bin/acs-smtp-gateway").read_bytes() == gateway_binary().read_bytes()
    assert (root / prefix.lstrip("/") / "bin/acs-email-emulator").read_bytes() == emulator_binary().read_bytes()

    units = root / prefix.lstrip("/") / "lib/systemd/system"
    service = (units / "acs-smtp-gateway.service").read_text()
    exec_start = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == [f"ExecStart={prefix}/bin/acs-smtp-gateway serve --log-format logfmt $GATEWAY_OPTS"]
    # Apart from ExecStart=, the units are the repository's.
    original = (REPO / "systemd/acs-smtp-gateway.service").read_text()
    assert service == original.replace("ExecStart=/usr/bin/acs-smtp-gateway ", f"ExecStart={prefix}/bin/acs-smtp-gateway ")
    assert (units / "acs-smtp-gateway.socket").read_bytes() == (REPO / "systemd/acs-smtp-gateway.socket").read_bytes()
    # The paths the unit reads are where install put them.
    assert "EnvironmentFile=-/etc/default/acs-smtp-gateway" in service
    assert "LoadCredential=acs-connection-string:/etc/acs-smtp-gateway/connection-string" in service

    # The options example: installed as shipped, sets GATEWAY_OPTS, holds no secret.
    options = (root / "etc/default/acs-smtp-gateway").read_text()
    assert options == EXAMPLE.read_text()
    assert re.search(r'^GATEWAY_OPTS=""$', options, re.MULTILINE)
    assert re.search(r"^#GATEWAY_OPTS=\"--sender-address ", options, re.MULTILINE)

    # No secret anywhere: the credential directory is empty, no file carries a key.
    assert list((root / "etc/acs-smtp-gateway").iterdir()) == []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            data = path.read_bytes()
            for pattern in SECRET_PATTERNS:
                assert not pattern.search(data), f"{path} looks like it holds a secret"


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local"])
def test_install_reinstall_and_uninstall(tmp_path, prefix):
    root = tmp_path / "root"
    make("install", DESTDIR=str(root), PREFIX=prefix)
    check_installed(root, prefix)

    # The administrator edits the options and adds the credential; a second install keeps both.
    options = root / "etc/default/acs-smtp-gateway"
    edited = options.read_text() + 'GATEWAY_OPTS="--sender-address DoNotReply@mail.example.com"\n'
    options.write_text(edited)
    credential = root / "etc/acs-smtp-gateway/connection-string"
    credential.write_text("endpoint=https://example.communication.azure.com/;accesskey=dGVzdA==\n")
    credential.chmod(0o600)
    result = make("install", DESTDIR=str(root), PREFIX=prefix)
    assert "keeping existing" in result.stdout
    assert options.read_text() == edited
    assert credential.is_file()

    # Uninstall removes what install added and nothing of the administrator's.
    result = make("uninstall", DESTDIR=str(root), PREFIX=prefix)
    assert "keeping edited" in result.stdout
    files = sorted("/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["/etc/acs-smtp-gateway/connection-string", "/etc/default/acs-smtp-gateway"]
    assert options.read_text() == edited

    # Without the credential the directory goes too; the edited options file still stays.
    credential.unlink()
    make("uninstall", DESTDIR=str(root), PREFIX=prefix)
    files = sorted("/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["/etc/default/acs-smtp-gateway"]
    assert not (root / "etc/acs-smtp-gateway").exists()


def test_uninstall_removes_an_unedited_options_file(tmp_path):
    root = tmp_path / "root"
    make("install", DESTDIR=str(root))
    make("uninstall", DESTDIR=str(root))
    assert [p for p in root.rglob("*") if not p.is_dir()] == []
    assert not (root / "etc/acs-smtp-gateway").exists()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed (Debian's dpkg package)")
def test_deb(tmp_path):
    result = make("deb", DEB_DIR=str(tmp_path / "deb"), DEB_COMPRESSION="none")
    deb = Path(result.stdout.strip().splitlines()[-1])
    assert deb.is_file() and deb.parent == tmp_path / "deb", result.stdout
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(rf"acs-smtp-gateway_0\.1\.0(~git[0-9a-f]+)?_{arch}\.deb", deb.name)

    def dpkg_deb(*args: str) -> str:
        return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout

    # The files: the /usr tree of `make install`, all owned by root.
    contents = {}
    for line in dpkg_deb("--contents", str(deb)).splitlines():
        mode, owner, _size, _date, _time, name = line.split(None, 5)
        assert owner == "root/root", line
        contents[name.removeprefix(".").rstrip("/") or "/"] = mode
    assert contents == {
        "/": "drwxr-xr-x",
        "/etc": "drwxr-xr-x",
        "/etc/acs-smtp-gateway": "drwxr-x---",
        "/etc/default": "drwxr-xr-x",
        "/etc/default/acs-smtp-gateway": "-rw-r--r--",
        "/usr": "drwxr-xr-x",
        "/usr/bin": "drwxr-xr-x",
        "/usr/bin/acs-email-emulator": "-rwxr-xr-x",
        "/usr/bin/acs-smtp-gateway": "-rwxr-xr-x",
        "/usr/lib": "drwxr-xr-x",
        "/usr/lib/systemd": "drwxr-xr-x",
        "/usr/lib/systemd/system": "drwxr-xr-x",
        "/usr/lib/systemd/system/acs-smtp-gateway.service": "-rw-r--r--",
        "/usr/lib/systemd/system/acs-smtp-gateway.socket": "-rw-r--r--",
    }

    # The control data.
    def field(name: str) -> str:
        return dpkg_deb("--field", str(deb), name).strip()

    assert field("Package") == "acs-smtp-gateway"
    assert field("Architecture") == arch
    assert re.fullmatch(r"0\.1\.0(~git[0-9a-f]+)?", field("Version"))
    depends = [entry.split()[0] for entry in field("Depends").split(",")]
    for needed in ("libc6", "libcurl4", "libssl3"):
        assert needed in depends, field("Depends")
    assert int(field("Installed-Size")) > 0

    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text() == "/etc/default/acs-smtp-gateway\n"
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text
        subprocess.run(["sh", "-n", str(path)], check=True)
        # Nothing enabled or started, no user created (DynamicUser=yes), the credential never touched.
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for forbidden in ("systemctl enable", "systemctl start", "useradd", "adduser", "connection-string"):
            assert forbidden not in code, f"{script} runs {forbidden!r}"

    # The scripts are idempotent: run twice each, against a systemctl that only records its arguments.
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    calls = tmp_path / "systemctl-calls"
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (fake_bin / "systemctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    for script, args in (("postinst", ["configure", ""]), ("prerm", ["remove"]), ("postrm", ["remove"])):
        for _ in range(2):
            subprocess.run(["sh", str(control / script), *args], env=env, check=True, timeout=30)
    recorded = calls.read_text().splitlines() if calls.exists() else []
    if Path("/run/systemd/system").is_dir():
        assert recorded == ["daemon-reload"] * 2 + ["stop acs-smtp-gateway.socket acs-smtp-gateway.service"] * 2 \
            + ["daemon-reload"] * 2
    else:
        assert recorded == []  # no systemd running: the scripts leave it alone
