"""pytest fixtures: start the real acs-smtp-gateway binary on a free port with a temporary outbox.

The binary is `$GATEWAY_BIN`, by default `<repo>/.build/debug/acs-smtp-gateway` (build it with
`swift build`). Run the suite with `python3 -m pytest Tests/EndToEnd -q` from the repository root.

Fixtures:
- `gateway`: a gateway with default options; on teardown it gets SIGTERM and must exit 0 within a few
  seconds.
- `start_gateway(*args, listen_host=..., check_exit=True)`: a factory for gateways with other options
  (same teardown rule unless `check_exit=False`, for tests that stop the process themselves).
When a test fails, the stderr log of each gateway it started is attached to the report.
"""

from __future__ import annotations

import pytest

from e2e_support import Gateway, gateway_binary

EXIT_TIMEOUT = 5.0


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def gateway_bin():
    binary = gateway_binary()
    if not binary.is_file():
        pytest.fail(f"gateway binary {binary} not found: run `swift build` first or set GATEWAY_BIN", pytrace=False)
    return binary


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    gateways = getattr(item, "_e2e_gateways", [])
    if report.failed and gateways:
        for index, gw in enumerate(gateways):
            text = gw.stderr()
            if len(text) > 20000:
                text = "[... head cut ...]\n" + text[-20000:]
            report.sections.append((f"gateway #{index} stderr ({' '.join(gw.command[1:])})", text))


@pytest.fixture
def start_gateway(request, tmp_path, gateway_bin):
    started: list[tuple[Gateway, bool]] = []
    request.node._e2e_gateways = []

    def start(*args: str, listen_host: str = "127.0.0.1", check_exit: bool = True,
              env: dict[str, str] | None = None) -> Gateway:
        last_error = None
        for attempt in range(3):  # a free port can be taken between the probe and the bind: retry
            gw = Gateway(tmp_path, list(args), listen_host=listen_host, name=f"gw{len(started)}-{attempt}", env=env)
            request.node._e2e_gateways.append(gw)
            try:
                gw.start()
            except RuntimeError as error:
                last_error = error
                gw.stop()
                if "in use" in gw.stderr().lower():
                    continue
                raise
            started.append((gw, check_exit))
            return gw
        raise last_error

    yield start

    problems = []
    for gw, check_exit in started:
        if not gw.alive():
            status = gw.proc.returncode
            gw.stop()
            if check_exit and status != 0:
                problems.append(f"gateway on {gw.listen} had already exited with {status}")
            continue
        status = gw.stop(EXIT_TIMEOUT)
        if check_exit and status != 0:
            problems.append(f"gateway on {gw.listen} did not exit 0 within {EXIT_TIMEOUT}s after SIGTERM "
                            f"(status {status})\n--- stderr ---\n{gw.stderr()[-8000:]}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def gateway(start_gateway):
    return start_gateway()


def _module_gateway(tmp_path_factory, gateway_bin, *args: str):
    gw = Gateway(tmp_path_factory.mktemp("module-gw"), list(args)).start()
    yield gw
    status = gw.stop(EXIT_TIMEOUT)
    assert status == 0, (f"shared gateway on {gw.listen} did not exit 0 within {EXIT_TIMEOUT}s after SIGTERM "
                         f"(status {status})\n--- stderr ---\n{gw.stderr()[-8000:]}")


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory, gateway_bin):
    """One default gateway shared by a module's tests (they must tell their messages apart with
    `gw.ids()` snapshots)."""
    yield from _module_gateway(tmp_path_factory, gateway_bin)


@pytest.fixture(scope="module")
def module_gateway_reject_bare_lf(tmp_path_factory, gateway_bin):
    yield from _module_gateway(tmp_path_factory, gateway_bin, "--bare-lf", "reject")


@pytest.fixture
def shared_gateway(request, module_gateway):
    request.node._e2e_gateways = [module_gateway]
    assert module_gateway.alive(), "the shared gateway died in an earlier test"
    return module_gateway


@pytest.fixture
def shared_gateway_reject_bare_lf(request, module_gateway_reject_bare_lf):
    request.node._e2e_gateways = [module_gateway_reject_bare_lf]
    assert module_gateway_reject_bare_lf.alive(), "the shared gateway died in an earlier test"
    return module_gateway_reject_bare_lf


# --------------------------------------------------------------------------------------------------
# ACS: a test CA and the emulator (acs_support.py)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    from acs_support import make_certificates

    return make_certificates(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def start_emulator(tmp_path, certificates):
    from acs_support import Emulator

    started = []

    def start(*args: str) -> "Emulator":
        emulator = Emulator(tmp_path / f"emulator{len(started)}", certificates, *args)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        status = emulator.stop()
        assert status == 0, f"the emulator did not exit 0 after SIGTERM ({status}):\n{emulator.stderr_path.read_text()}"
