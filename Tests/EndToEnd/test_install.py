"""`make install`, `make uninstall` and `make deb` (Makefile, README.md "Installing").

Each test installs into a temporary DESTDIR and checks the tree exactly: files, modes, the unit's ExecStart=
and ExecReload=, no secret anywhere, the configuration file (which the installed binary's check-config
accepts, also as an unprivileged user like the service's DynamicUser), and that an administrator's edits
survive a second install and an uninstall. The release build is skipped with INSTALL_BINARY/INSTALL_EMULATOR
pointing at the binaries the rest of the suite uses ($GATEWAY_BIN, $EMULATOR_BIN), so these tests take
seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from acs_support import emulator_binary
from e2e_support import REPO, gateway_binary

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

CONFIG = "/etc/acs-smtp-gateway/gateway.conf"
EXAMPLE = REPO / CONFIG.lstrip("/")
CONFIG_DIR = "/etc/acs-smtp-gateway/"
POSTINST = REPO / "etc/debian/postinst"
POSTRM = REPO / "etc/debian/postrm"
SECRET_PATTERNS = [
    re.compile(rb"accesskey=[A-Za-z0-9+/=]{16,}", re.IGNORECASE),  # a real connection string's key
    re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def run_make(*args: str, **variables: str) -> subprocess.CompletedProcess:
    binaries = {"INSTALL_BINARY": str(gateway_binary()), "INSTALL_EMULATOR": str(emulator_binary())}
    for binary in binaries.values():
        if not Path(binary).is_file():
            pytest.fail(f"{binary} not found: run `swift build` first or set GATEWAY_BIN/EMULATOR_BIN", pytrace=False)
    command = ["make", "--no-print-directory", "-C", str(REPO), *args]
    command += [f"{key}={value}" for key, value in {**binaries, **variables}.items()]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def make(*args: str, **variables: str) -> subprocess.CompletedProcess:
    result = run_make(*args, **variables)
    assert result.returncode == 0, f"make {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def tree(root: Path) -> dict[str, str]:
    """Every path under root (relative, with a trailing / for directories) and its permission bits, or for a
    symbolic link "-> " and its target."""
    entries = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        name = "/" + str(path.relative_to(root)) + ("/" if stat.S_ISDIR(mode) else "")
        if stat.S_ISLNK(mode):
            entries[name] = "-> " + os.readlink(path)
            continue
        assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), f"unexpected file type: {name}"
        entries[name] = oct(stat.S_IMODE(mode))
    return entries


def expected_tree(prefix: str) -> dict[str, str]:
    entries = {
        "/etc/": "0o755",
        # 0755: the service's dynamic user reads gateway.conf; the credential files in it are 0600 root.
        CONFIG_DIR: "0o755",
        CONFIG: "0o644",
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
    entries[f"{prefix}/lib/systemd/system/acs-smtp-gateway-sendmail.socket"] = "0o644"
    return entries


def check_installed(root: Path, prefix: str) -> None:
    # The umask of whoever runs the tests decides the modes of parent directories install -D creates;
    # everything the Makefile sets explicitly is checked exactly.
    assert tree(root).keys() == expected_tree(prefix).keys()
    actual, wanted = tree(root), expected_tree(prefix)
    explicit = [name for name in wanted if not name.endswith("/") or name == CONFIG_DIR]
    assert {name: actual[name] for name in explicit} == {name: wanted[name] for name in explicit}

    assert (root / prefix.lstrip("/") / "bin/acs-smtp-gateway").read_bytes() == gateway_binary().read_bytes()
    assert (root / prefix.lstrip("/") / "bin/acs-email-emulator").read_bytes() == emulator_binary().read_bytes()

    units = root / prefix.lstrip("/") / "lib/systemd/system"
    service = (units / "acs-smtp-gateway.service").read_text()
    exec_start = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == [f"ExecStart={prefix}/bin/acs-smtp-gateway serve --config {CONFIG}"]
    # Reload is SIGHUP (Type=notify-reload would need systemd 253; Debian 12 has 252).
    assert [line for line in service.splitlines() if line.startswith(("ExecReload=", "Type="))] \
        == ["Type=notify", "ExecReload=/bin/kill -HUP $MAINPID"]
    # Apart from ExecStart=, the units are the repository's.
    original = (REPO / "systemd/acs-smtp-gateway.service").read_text()
    assert service == original.replace("ExecStart=/usr/bin/acs-smtp-gateway ", f"ExecStart={prefix}/bin/acs-smtp-gateway ")
    for socket_unit in ("acs-smtp-gateway.socket", "acs-smtp-gateway-sendmail.socket"):
        assert (units / socket_unit).read_bytes() == (REPO / "systemd" / socket_unit).read_bytes()
    # The paths the unit reads are where install put them; /etc/default is gone for good.
    assert "LoadCredential=acs-connection-string:/etc/acs-smtp-gateway/connection-string" in service
    assert not re.search(r"^\s*(EnvironmentFile=|.*\$GATEWAY_OPTS)", service, re.MULTILINE)

    # The configuration file: installed as shipped, every key commented out (the built-in defaults).
    assert (root / CONFIG.lstrip("/")).read_text() == EXAMPLE.read_text()

    # No secret anywhere: no credential file is installed, no file carries a key.
    assert [p.name for p in (root / CONFIG_DIR.strip("/")).iterdir()] == ["gateway.conf"]
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

    # The administrator edits the configuration and adds the credential; a second install keeps both.
    config = root / CONFIG.lstrip("/")
    edited = config.read_text().replace("  #sender_address: DoNotReply@mail.example.com\n",
                                        "  sender_address: DoNotReply@mail.example.com\n")
    assert edited != config.read_text()
    config.write_text(edited)
    credential = root / "etc/acs-smtp-gateway/connection-string"
    credential.write_text("endpoint=https://example.communication.azure.com/;accesskey=dGVzdA==\n")
    credential.chmod(0o600)
    result = make("install", DESTDIR=str(root), PREFIX=prefix)
    assert f"keeping existing {root}{CONFIG}" in result.stdout
    assert "readable by its owner only" not in result.stdout  # a 0600 credential is left alone
    assert config.read_text() == edited
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600

    # Uninstall removes what install added and nothing of the administrator's.
    result = make("uninstall", DESTDIR=str(root), PREFIX=prefix)
    assert f"keeping edited {root}{CONFIG}" in result.stdout
    assert installed_files(root) == ["/etc/acs-smtp-gateway/connection-string", CONFIG]
    assert config.read_text() == edited

    # Without the credential the edited configuration still stays, and so does its directory.
    credential.unlink()
    result = make("uninstall", DESTDIR=str(root), PREFIX=prefix)
    assert "keeping non-empty" in result.stdout
    assert installed_files(root) == [CONFIG]


def installed_files(root: Path) -> list[str]:
    return sorted("/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_uninstall_removes_an_unedited_configuration_file(tmp_path):
    root = tmp_path / "root"
    make("install", DESTDIR=str(root))
    make("uninstall", DESTDIR=str(root))
    assert [p for p in root.rglob("*") if not p.is_dir()] == []
    assert not (root / "etc/acs-smtp-gateway").exists()


def test_install_over_an_older_layout(tmp_path):
    """Before gateway.conf: /etc/acs-smtp-gateway was 0750 (so a credential made with a loose mode was still
    hidden) and options were GATEWAY_OPTS in /etc/default/acs-smtp-gateway. Install tightens the credential
    before it opens the directory, and leaves the old options file alone with a note."""
    root = tmp_path / "root"
    directory = root / "etc/acs-smtp-gateway"
    directory.mkdir(parents=True)
    directory.chmod(0o750)
    credential = directory / "connection-string"
    secret = "endpoint=https://example.communication.azure.com/;accesskey=dGVzdA==\n"
    credential.write_text(secret)
    credential.chmod(0o644)
    legacy = root / "etc/default/acs-smtp-gateway"
    legacy.parent.mkdir(parents=True)
    legacy.write_text('GATEWAY_OPTS="--sender-address DoNotReply@mail.example.com"\n')

    result = make("install", DESTDIR=str(root))
    assert f"made {credential} readable by its owner only" in result.stdout
    assert f"note: {legacy} is no longer read: move its GATEWAY_OPTS into {CONFIG}" in result.stdout
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600 and credential.read_text() == secret
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert (directory / "gateway.conf").read_text() == EXAMPLE.read_text()
    assert legacy.read_text() == 'GATEWAY_OPTS="--sender-address DoNotReply@mail.example.com"\n'


def clean_environment() -> dict[str, str]:
    """The environment without anything that configures the gateway, so only the file counts."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith(("ACSGW_", "ACS_", "AZURE_", "IDENTITY_", "MSI_")) and key != "CREDENTIALS_DIRECTORY"}


def test_installed_configuration_passes_check_config(tmp_path):
    """The installed binary accepts the installed gateway.conf, given the way ExecStart= gives it."""
    root = tmp_path / "root"
    make("install", DESTDIR=str(root))
    binary, config = root / "usr/bin/acs-smtp-gateway", root / CONFIG.lstrip("/")
    service = (root / "usr/lib/systemd/system/acs-smtp-gateway.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    command, verb, *arguments = exec_start.removeprefix("ExecStart=").split()
    assert (command, verb) == ("/usr/bin/acs-smtp-gateway", "serve")
    arguments = [str(config) if argument == CONFIG else argument for argument in arguments]
    assert arguments == ["--config", str(config)]

    result = subprocess.run([str(binary), "check-config", *arguments], capture_output=True, text=True,
                            env=clean_environment(), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"# file: {config}" in result.stdout
    assert "# delivery: outbox" in result.stdout  # every key commented out: no ACS until configured
    quiet = subprocess.run([str(binary), "check-config", "--quiet", *arguments], capture_output=True, text=True,
                           env=clean_environment(), timeout=60)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run check-config as another user")
def test_an_unprivileged_service_user_can_read_the_installed_configuration():
    """The unit's DynamicUser is neither root nor the file's owner: with the modes install sets (directory
    0755, file 0644) such a user reads gateway.conf; with the directory 0750 of older installs it could not."""
    # Not under pytest's tmp_path, whose parents are 0700: the user must be able to reach the tree.
    top = Path(tempfile.mkdtemp(prefix="acsgw-install-"))
    try:
        top.chmod(0o755)
        root = top / "root"
        make("install", DESTDIR=str(root))
        for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
            directory.chmod(directory.stat().st_mode | 0o005)  # parents install -D made with the umask
        directory = root / "etc/acs-smtp-gateway"
        directory.chmod(0o755)  # as installed (checked exactly by the tests above)
        command = [str(root / "usr/bin/acs-smtp-gateway"), "check-config", "--quiet",
                   "--config", str(directory / "gateway.conf")]

        def as_nobody() -> None:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

        def check() -> subprocess.CompletedProcess:
            return subprocess.run(command, capture_output=True, text=True, env=clean_environment(),
                                  preexec_fn=as_nobody, cwd="/", timeout=60)

        result = check()
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result
        directory.chmod(0o750)
        result = check()
        assert result.returncode == 78 and "cannot read the configuration file" in result.stderr, result
    finally:
        shutil.rmtree(top)


needs_dpkg_deb = pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                                    reason="dpkg-deb is not installed (Debian's dpkg package)")


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> dict[str, Path]:
    """`make deb` once for the tests below: the two packages it prints, by package name."""
    directory = tmp_path_factory.mktemp("deb")
    result = make("deb", DEB_DIR=str(directory), DEB_COMPRESSION="none")
    printed = [Path(line) for line in result.stdout.splitlines() if line.startswith("/") and line.endswith(".deb")]
    assert len(printed) == 2 and all(deb.is_file() and deb.parent == directory for deb in printed), result.stdout
    return {deb.name.split("_")[0]: deb for deb in printed}


def dpkg_deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def deb_contents(deb: Path) -> dict[str, str]:
    """What `dpkg-deb --contents` lists: each path and its mode (a link's with " -> target"), all root-owned."""
    contents = {}
    for line in dpkg_deb("--contents", str(deb)).splitlines():
        mode, owner, _size, _date, _time, name = line.split(None, 5)
        assert owner == "root/root", line
        name, _, target = name.partition(" -> ")
        contents[name.removeprefix(".").rstrip("/") or "/"] = mode + (f" -> {target}" if target else "")
    return contents


@needs_dpkg_deb
def test_deb(tmp_path, debs):
    assert sorted(debs) == ["acs-smtp-gateway", "acs-smtp-gateway-sendmail"]
    deb = debs["acs-smtp-gateway"]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(rf"acs-smtp-gateway_0\.1\.0(~git[0-9a-f]+)?_{arch}\.deb", deb.name)

    # The files: the /usr tree of `make install`, all owned by root; no sendmail link (that is the other package).
    assert deb_contents(deb) == {
        "/": "drwxr-xr-x",
        "/etc": "drwxr-xr-x",
        "/etc/acs-smtp-gateway": "drwxr-xr-x",
        "/etc/acs-smtp-gateway/gateway.conf": "-rw-r--r--",
        "/usr": "drwxr-xr-x",
        "/usr/bin": "drwxr-xr-x",
        "/usr/bin/acs-email-emulator": "-rwxr-xr-x",
        "/usr/bin/acs-smtp-gateway": "-rwxr-xr-x",
        "/usr/lib": "drwxr-xr-x",
        "/usr/lib/systemd": "drwxr-xr-x",
        "/usr/lib/systemd/system": "drwxr-xr-x",
        "/usr/lib/systemd/system/acs-smtp-gateway.service": "-rw-r--r--",
        "/usr/lib/systemd/system/acs-smtp-gateway.socket": "-rw-r--r--",
        "/usr/lib/systemd/system/acs-smtp-gateway-sendmail.socket": "-rw-r--r--",
    }

    # The control data.
    def field(name: str) -> str:
        return dpkg_deb("--field", str(deb), name).strip()

    assert field("Package") == "acs-smtp-gateway"
    assert field("Architecture") == arch
    assert re.fullmatch(r"0\.1\.0(~git[0-9a-f]+)?", field("Version"))
    depends = [entry.split()[0] for entry in field("Depends").split(",")]
    for needed in ("libc6", "libcurl4", "libssl3", "procps"):  # procps: /bin/kill for ExecReload=
        assert needed in depends, field("Depends")
    assert int(field("Installed-Size")) > 0

    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text() == f"{CONFIG}\n"
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text
        subprocess.run(["sh", "-n", str(path)], check=True)
        # Nothing enabled or started, no user created (DynamicUser=yes), the credential never read or
        # written: postinst names it only to make it owner-only (test_postinst_upgrade_from_an_older_layout).
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for forbidden in ("systemctl enable", "systemctl start", "useradd", "adduser"):
            assert forbidden not in code, f"{script} runs {forbidden!r}"
        mentions = [line.strip() for line in code.splitlines() if "connection-string" in line]
        assert mentions == (["for secret in connection-string access-key azure-client-secret; do"]
                            if script == "postinst" else []), mentions

    # The scripts are idempotent: run twice each, against a systemctl that only records its arguments.
    # $DPKG_ROOT (as with dpkg --root) keeps postinst away from this host's /etc.
    recorded = []
    for script, args in (("postinst", ["configure", ""]), ("prerm", ["remove"]), ("postrm", ["remove"])):
        for _ in range(2):
            recorded += run_maintainer_script(tmp_path, control / script, tmp_path / "dpkg-root", *args)[1]
    if Path("/run/systemd/system").is_dir():
        assert recorded == ["daemon-reload"] * 2 \
            + ["stop acs-smtp-gateway.socket acs-smtp-gateway-sendmail.socket acs-smtp-gateway.service"] * 2 \
            + ["daemon-reload"] * 2
    else:
        assert recorded == []  # no systemd running: the scripts leave it alone


@needs_dpkg_deb
def test_sendmail_deb_holds_only_the_links_and_declares_itself_an_mta(tmp_path, debs):
    """acs-smtp-gateway-sendmail: install-sendmail's links and a README, nothing else; the control fields every
    Debian MTA has (so dpkg never lets two of them own /usr/sbin/sendmail), and exactly our gateway."""
    deb, gateway = debs["acs-smtp-gateway-sendmail"], debs["acs-smtp-gateway"]
    version = dpkg_deb("--field", str(gateway), "Version").strip()
    assert deb.name == f"acs-smtp-gateway-sendmail_{version}_all.deb"

    doc = "/usr/share/doc/acs-smtp-gateway-sendmail"
    directories = ["/", "/usr", "/usr/bin", "/usr/lib", "/usr/sbin", "/usr/share", "/usr/share/doc", doc]
    assert deb_contents(deb) == {
        **{directory: "drwxr-xr-x" for directory in directories},
        f"{doc}/README.Debian": "-rw-r--r--",
        **{link: "lrwxrwxrwx " + target for link, target in sendmail_links("/usr").items()},
    }
    assert sendmail_links("/usr")["/usr/sbin/sendmail"] == "-> ../bin/acs-smtp-gateway"

    fields = ("Package", "Version", "Architecture", "Depends", "Provides", "Conflicts", "Replaces", "Section",
              "Priority")
    assert dict(zip(fields, dpkg_deb("--field", str(deb), *fields).strip().splitlines())) == {
        "Package": "Package: acs-smtp-gateway-sendmail",
        "Version": f"Version: {version}",
        "Architecture": "Architecture: all",
        "Depends": f"Depends: acs-smtp-gateway (= {version})",
        "Provides": "Provides: mail-transport-agent",
        "Conflicts": "Conflicts: mail-transport-agent",
        "Replaces": "Replaces: mail-transport-agent",
        "Section": "Section: mail",
        "Priority": "Priority: optional",
    }
    description = dpkg_deb("--field", str(deb), "Description")
    for words in ("MTA", "cron", "PHP mail()", "mailx", "/usr/sbin/sendmail", "remove or purge Postfix",
                  "systemctl enable --now acs-smtp-gateway-sendmail.socket"):
        assert words in description, description
    assert int(dpkg_deb("--field", str(deb), "Installed-Size")) > 0

    # No maintainer script and no conffile: dpkg alone adds and removes the links.
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    assert sorted(path.name for path in control.iterdir()) == ["control"]

    readme = (REPO / "etc/debian/acs-smtp-gateway-sendmail/README.Debian").read_text()
    for link in sendmail_links("/usr"):
        assert link in readme


class DpkgRoot:
    """An empty dpkg database in a directory, for `dpkg --root`: packages are unpacked there, never on this host.
    Maintainer scripts run without chroot (--force-script-chrootless) with $DPKG_ROOT set, as ours expect, and
    against a systemctl that does nothing."""

    def __init__(self, path: Path):
        self.path = path
        database = path / "var/lib/dpkg"
        for directory in ("info", "updates", "triggers"):
            (database / directory).mkdir(parents=True)
        for file in ("status", "available"):
            (database / file).touch()
        fake_bin = path.parent / f"{path.name}-bin"
        fake_bin.mkdir()
        (fake_bin / "systemctl").write_text("#!/bin/sh\nexit 0\n")
        (fake_bin / "systemctl").chmod(0o755)
        self.env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}

    def dpkg(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["dpkg", f"--root={self.path}", "--force-script-chrootless", "--log=/dev/null", *args],
                              capture_output=True, text=True, env=self.env, timeout=300)

    def state(self, package: str) -> str:
        """The package's state in dpkg's database: installed, unpacked, not-installed…"""
        result = self.dpkg("--status", package)
        status = next((line for line in result.stdout.splitlines() if line.startswith("Status: ")), "not-installed")
        return status.split()[-1]


def stand_in_mta(tmp_path: Path) -> Path:
    """A package in Postfix's place as far as dpkg is concerned: its own /usr/sbin/sendmail, and Provides,
    Conflicts and Replaces mail-transport-agent like every MTA package."""
    root = tmp_path / "stand-in-mta"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/sendmail").write_text("#!/bin/sh\necho the other MTA\n")
    (root / "usr/sbin/sendmail").chmod(0o755)
    (root / "DEBIAN/control").write_text(
        "Package: stand-in-mta\nVersion: 1.0\nArchitecture: all\nMaintainer: tests <root@localhost>\n"
        "Provides: mail-transport-agent\nConflicts: mail-transport-agent\nReplaces: mail-transport-agent\n"
        "Description: a mail transport agent for the tests\n stands in for Postfix or Exim\n")
    deb = tmp_path / "stand-in-mta_1.0_all.deb"
    dpkg_deb("--build", "--root-owner-group", "-Znone", str(root), str(deb))
    return deb


@needs_dpkg_deb
@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root unpacks files as root")
def test_sendmail_deb_in_a_dpkg_root_next_to_another_mta(tmp_path, debs):
    """dpkg itself, on a scratch root: with another MTA installed it refuses the package (and the other MTA
    refuses in turn) and leaves that MTA's sendmail alone; without one, the links resolve to the gateway."""
    gateway, sendmail = str(debs["acs-smtp-gateway"]), str(debs["acs-smtp-gateway-sendmail"])
    other = str(stand_in_mta(tmp_path))
    root = DpkgRoot(tmp_path / "root")
    # The gateway's own dependencies (libc6, libcurl4…) are not in this empty root; only ours is checked.
    result = root.dpkg("--install", "--force-depends", other, gateway)
    assert result.returncode == 0, result

    result = root.dpkg("--install", sendmail)
    assert result.returncode != 0
    assert "conflicting packages - not installing acs-smtp-gateway-sendmail" in result.stderr, result.stderr
    assert root.state("acs-smtp-gateway-sendmail") == "not-installed"
    assert (root.path / "usr/sbin/sendmail").read_text() == "#!/bin/sh\necho the other MTA\n"
    assert not (root.path / "usr/bin/mailq").exists()

    # The way apt switches MTAs: the other one goes first.
    assert root.dpkg("--purge", "stand-in-mta").returncode == 0
    result = root.dpkg("--install", sendmail)
    assert result.returncode == 0, result
    assert root.state("acs-smtp-gateway-sendmail") == "installed"
    binary = root.path / "usr/bin/acs-smtp-gateway"
    assert binary.read_bytes() == gateway_binary().read_bytes()
    check_links_resolve(root.path, "/usr")
    assert root.dpkg("--search", "/usr/sbin/sendmail").stdout == "acs-smtp-gateway-sendmail: /usr/sbin/sendmail\n"

    result = root.dpkg("--install", other)
    assert result.returncode != 0 and "conflicting packages - not installing stand-in-mta" in result.stderr, result
    check_links_resolve(root.path, "/usr")

    # Removing the package removes the links and nothing of the gateway's.
    assert root.dpkg("--remove", "acs-smtp-gateway-sendmail").returncode == 0
    for link in sendmail_links("/usr"):
        assert not (root.path / link.lstrip("/")).is_symlink(), link
    assert binary.is_file() and root.state("acs-smtp-gateway") == "installed"


@needs_dpkg_deb
@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root unpacks files as root")
def test_sendmail_deb_needs_the_same_gateway_version(tmp_path, debs):
    root = DpkgRoot(tmp_path / "root")
    result = root.dpkg("--install", str(debs["acs-smtp-gateway-sendmail"]))
    version = dpkg_deb("--field", str(debs["acs-smtp-gateway"]), "Version").strip()
    assert result.returncode != 0
    assert f"depends on acs-smtp-gateway (= {version})" in result.stderr, result.stderr
    assert root.state("acs-smtp-gateway-sendmail") == "unpacked"  # not configured


def run_maintainer_script(tmp_path: Path, script: Path, root: Path,
                          *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """A maintainer script run as dpkg would with $DPKG_ROOT=root, against a systemctl that only records
    its arguments; returns the run and the systemctl calls it made."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    calls = tmp_path / "systemctl-calls"
    calls.unlink(missing_ok=True)
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (fake_bin / "systemctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "DPKG_ROOT": str(root)}
    result = subprocess.run(["sh", str(script), *args], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("legacy_options", ['GATEWAY_OPTS=""\n', 'GATEWAY_OPTS="--sender-address a@example.com"\n'])
def test_postinst_upgrade_from_an_older_layout(tmp_path, legacy_options):
    """Upgrading the .deb: dpkg keeps the mode of an existing directory, so postinst opens the 0750
    /etc/acs-smtp-gateway of an older package (credential files made owner-only first). A running service
    started with GATEWAY_OPTS is not restarted, since the new unit no longer reads them."""
    root = tmp_path / "root"
    directory = root / "etc/acs-smtp-gateway"
    directory.mkdir(parents=True)
    shutil.copy(EXAMPLE, directory / "gateway.conf")  # as dpkg unpacked it
    (directory / "gateway.conf").chmod(0o644)
    directory.chmod(0o750)
    loose, tight = directory / "connection-string", directory / "azure-client-secret"
    for path, mode in ((loose, 0o644), (tight, 0o600)):
        path.write_text("secret\n")
        path.chmod(mode)
    (root / "etc/default").mkdir()
    (root / "etc/default/acs-smtp-gateway").write_text("# comments\n" + legacy_options)

    result, calls = run_maintainer_script(tmp_path, POSTINST, root, "configure", "0.1.0~git0000000")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in directory.iterdir()} \
        == {"gateway.conf": "0o644", "connection-string": "0o600", "azure-client-secret": "0o600"}
    assert loose.read_text() == tight.read_text() == "secret\n"
    assert f"made {loose} readable by its owner only" in result.stderr
    assert str(tight) not in result.stderr
    options_set = "--sender" in legacy_options
    assert ("is no longer read" in result.stderr) == options_set, result.stderr
    if Path("/run/systemd/system").is_dir():
        assert calls == ["daemon-reload"] + ([] if options_set else ["try-restart acs-smtp-gateway.service"])
    else:
        assert calls == []

    # Idempotent: a second run changes and says nothing more about the directory.
    again, _ = run_maintainer_script(tmp_path, POSTINST, root, "configure", "0.1.0~git0000000")
    assert "readable by its owner only" not in again.stderr and "mode 0755" not in again.stderr


def test_postrm_removes_the_directory_systemd_leaves_in_run(tmp_path):
    """systemd makes /run/acs-smtp-gateway for the sendmail socket and the service's runtime directory and never
    removes it; removing the package deletes it, an upgrade leaves it to the running units."""
    root = tmp_path / "root"
    runtime, neighbour = root / "run/acs-smtp-gateway", root / "run/other"
    for directory in (runtime, neighbour):
        directory.mkdir(parents=True)
    (runtime / "submit.sock").write_text("")  # stands for a socket file left behind
    run_maintainer_script(tmp_path, POSTRM, root, "upgrade", "0.1.0~git0000000")
    assert (runtime / "submit.sock").exists()
    run_maintainer_script(tmp_path, POSTRM, root, "remove")
    assert not runtime.exists() and neighbour.is_dir()
    run_maintainer_script(tmp_path, POSTRM, root, "remove")  # idempotent


# --------------------------------------------------------------------------------------------------
# make install-sendmail / uninstall-sendmail: the links that make the gateway the host's MTA


def sendmail_links(prefix: str) -> dict[str, str]:
    """The links install-sendmail makes, as tree() shows them: relative, so they resolve inside DESTDIR.
    /usr/sbin/sendmail and /usr/lib/sendmail whatever the prefix (programs run them by those paths), mailq and
    newaliases beside the binary (found through PATH)."""
    return {
        "/usr/sbin/sendmail": "-> " + os.path.relpath(f"{prefix}/bin/acs-smtp-gateway", "/usr/sbin"),
        "/usr/lib/sendmail": "-> ../sbin/sendmail",
        f"{prefix}/bin/mailq": "-> acs-smtp-gateway",
        f"{prefix}/bin/newaliases": "-> acs-smtp-gateway",
    }


def check_links_resolve(root: Path, prefix: str) -> None:
    binary = root / prefix.lstrip("/") / "bin/acs-smtp-gateway"
    for link in sendmail_links(prefix):
        assert (root / link.lstrip("/")).resolve(strict=True) == binary.resolve(strict=True), link


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local"])
def test_install_sendmail_links_and_uninstall_them(tmp_path, prefix):
    root = tmp_path / "root"
    make("install", DESTDIR=str(root), PREFIX=prefix)
    before = tree(root)
    result = make("install-sendmail", DESTDIR=str(root), PREFIX=prefix)
    assert "acs-smtp-gateway-sendmail.socket" in result.stdout  # what to enable next
    added = {name: value for name, value in tree(root).items() if name not in before}
    assert {name: value for name, value in added.items() if not name.endswith("/")} == sendmail_links(prefix)
    assert {name: value for name, value in tree(root).items() if name in before} == before  # nothing else changed
    check_links_resolve(root, prefix)

    # Our own links are no obstacle: a second run (after an upgrade, say) succeeds and changes nothing.
    after = tree(root)
    make("install-sendmail", DESTDIR=str(root), PREFIX=prefix)
    assert tree(root) == after

    result = make("uninstall-sendmail", DESTDIR=str(root), PREFIX=prefix)
    assert [line for line in result.stdout.splitlines() if line.startswith("removed ")] \
        == [f"removed {root}{link}" for link in ("/usr/lib/sendmail", "/usr/sbin/sendmail",
                                                  f"{prefix}/bin/mailq", f"{prefix}/bin/newaliases")]
    # Only the links go (the directories they were made in are the system's).
    assert {name: value for name, value in tree(root).items() if not name.endswith("/")} \
        == {name: value for name, value in before.items() if not name.endswith("/")}

    # `make uninstall` takes the links with the binary they lead to.
    make("install-sendmail", DESTDIR=str(root), PREFIX=prefix)
    make("uninstall", DESTDIR=str(root), PREFIX=prefix)
    assert [p for p in root.rglob("*") if p.is_symlink() or p.is_file()] == []


def test_install_sendmail_refuses_to_replace_another_mta(tmp_path):
    """Postfix (or Exim, nullmailer, msmtp-mta) owns /usr/sbin/sendmail and friends: replacing them would break
    that MTA, so install-sendmail stops, names what it found and changes nothing, unless FORCE=1."""
    root = tmp_path / "root"
    make("install", DESTDIR=str(root))
    postfix = {"/usr/sbin/sendmail": b"\x7fELF postfix's sendmail", "/usr/bin/mailq": b"\x7fELF postfix's mailq"}
    for name, content in postfix.items():
        (root / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / name.lstrip("/")).write_bytes(content)
    (root / "usr/lib/sendmail").symlink_to("../sbin/sendmail")  # as Postfix's package has it
    before = tree(root)

    result = run_make("install-sendmail", DESTDIR=str(root))
    assert result.returncode != 0
    assert f"error: another mail transport agent provides {root}/usr/lib/sendmail {root}/usr/sbin/sendmail " \
           f"{root}/usr/bin/mailq\n" in result.stderr, result.stderr
    assert "remove or purge it first" in result.stderr and "FORCE=1" in result.stderr
    assert tree(root) == before  # not even newaliases, which was free
    for name, content in postfix.items():
        assert (root / name.lstrip("/")).read_bytes() == content

    # Uninstall leaves another MTA's files alone and says so.
    result = make("uninstall-sendmail", DESTDIR=str(root))
    assert f"keeping {root}/usr/sbin/sendmail: it does not lead to /usr/bin/acs-smtp-gateway" in result.stdout
    assert tree(root) == before

    result = make("install-sendmail", DESTDIR=str(root), FORCE="1")
    assert f"FORCE=1: replacing {root}/usr/lib/sendmail {root}/usr/sbin/sendmail {root}/usr/bin/mailq" in result.stdout
    assert {name: tree(root)[name] for name in sendmail_links("/usr")} == sendmail_links("/usr")
    check_links_resolve(root, "/usr")


def test_install_sendmail_refuses_a_link_to_another_program(tmp_path):
    root = tmp_path / "root"
    make("install", DESTDIR=str(root))
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/sendmail").symlink_to("../bin/msmtp")  # msmtp-mta's, dangling here
    result = run_make("install-sendmail", DESTDIR=str(root))
    assert result.returncode != 0 and f"provides {root}/usr/sbin/sendmail\n" in result.stderr, result.stderr
    assert os.readlink(root / "usr/sbin/sendmail") == "../bin/msmtp"
    assert not (root / "usr/bin/mailq").is_symlink()


def test_install_sendmail_needs_the_installed_binary(tmp_path):
    root = tmp_path / "root"
    result = run_make("install-sendmail", DESTDIR=str(root), PREFIX="/usr/local")
    assert result.returncode != 0
    assert f"error: {root}/usr/local/bin/acs-smtp-gateway is not installed: run make install first" in result.stderr
    assert not root.exists() or [p for p in root.rglob("*") if not p.is_dir()] == []
