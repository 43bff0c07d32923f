"""Shared fixtures: every behavioural test runs against the stdlib and against cysocketserver."""
import faulthandler
import importlib
import os
import shutil
import sys
import sysconfig
import tempfile

import pytest

from support_greenlet import drop_thread_hub

# A hung test must fail CI, not block it: dump every thread's stack and exit.
# Generous, because some tests (mypy runs) are legitimately slow; the tests here
# bound their own waits far below this.
WATCHDOG_SECONDS = float(os.environ.get("CYSOCKETSERVER_TEST_WATCHDOG", "900"))

# The stdlib, and cysocketserver on each of its engines, in one run.
IMPLEMENTATIONS = ["stdlib", "compiled", "python"]
IMPLEMENTATION_IDS = ["stdlib", "cy", "cy-pure"]
ENGINES = ["compiled", "python"]
ENGINE_IDS = ["compiled", "pure"]


def _stdlib_socketserver():
    mod = importlib.import_module("socketserver")
    stdlib_dir = os.path.realpath(sysconfig.get_paths()["stdlib"])
    where = os.path.realpath(getattr(mod, "__file__", "") or "")
    if not where.startswith(stdlib_dir + os.sep):
        pytest.fail(
            f"sys.modules['socketserver'] is not the stdlib module ({mod!r}); "
            "some test called install() in the test process"
        )
    return mod


def _cysocketserver():
    try:
        return importlib.import_module("cysocketserver")
    except Exception as exc:  # a broken package must fail loudly, not skip
        pytest.fail(f"cysocketserver failed to import: {exc!r}")


def load_implementation(name):
    return _stdlib_socketserver() if name == "stdlib" else _cysocketserver()


def _on_engine(name):
    """cysocketserver, building its loops, streams and hubs on engine ``name`` meanwhile."""
    mod = _cysocketserver()
    from cysocketserver import _engine

    if not _engine.available(name):
        pytest.skip(f"the {name} engine is not built in this install")
    with _engine.use(name):
        yield mod
    # A hub made on this engine for the test's own thread is not reused by the next test.
    drop_thread_hub()


@pytest.fixture(params=IMPLEMENTATIONS, ids=IMPLEMENTATION_IDS)
def ss(request):
    """The module under test: ``socketserver`` (stdlib), or ``cysocketserver`` on one engine."""
    if request.param == "stdlib":
        yield _stdlib_socketserver()
    else:
        yield from _on_engine(request.param)


@pytest.fixture
def stdlib_ss():
    return _stdlib_socketserver()


@pytest.fixture(params=ENGINES, ids=ENGINE_IDS)
def cy_ss(request):
    """cysocketserver on each engine."""
    yield from _on_engine(request.param)


@pytest.fixture
def engine(cy_ss):
    """The name of the engine cysocketserver runs on in this test."""
    from cysocketserver import _engine

    return _engine.current().name


@pytest.fixture
def is_stdlib(ss):
    return ss.__name__ == "socketserver"


@pytest.fixture
def short_tmp():
    """A short temporary directory: AF_UNIX paths are limited to ~107 bytes."""
    path = tempfile.mkdtemp(prefix="cyss-", dir="/tmp" if os.path.isdir("/tmp") else None)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """Path of a PEM file holding a self-signed certificate and its private key."""
    from support_net import test_certificate

    path = test_certificate(str(tmp_path_factory.mktemp("cert")))
    if path is None:
        pytest.skip("no test certificate and no openssl to make one")
    return path


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
