"""The package's type information: py.typed and the .pyi stubs.

mypy --strict must accept tests/typing/example.py (typical handler and server code), must
still catch type errors in such code (the stubs are precise, not Any), and mypy's stubtest
must find the stubs in line with the modules that run. Skipped where mypy is not installed
(it comes with the ``test`` extra).
"""
import importlib.util
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed")

import cysocketserver  # noqa: E402

EXAMPLE = Path(__file__).parent / "typing" / "example.py"
ALLOWLIST = Path(__file__).parent / "typing" / "stubtest-allowlist.txt"
MYPY_TIMEOUT = 600


def _package_root():
    """The sys.path entry cysocketserver was imported from."""
    return Path(cysocketserver.__file__).resolve().parent.parent


def _installed():
    site_dirs = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return _package_root() in site_dirs


def _env():
    """The environment for mypy and the example: they must see the package this test imported.

    An installed package is found in site-packages; one imported from a source tree (a
    PYTHONPATH, or an in-place build) is shown to mypy through MYPYPATH.
    """
    env = dict(os.environ)
    if not _installed():
        root = str(_package_root())
        env["MYPYPATH"] = root
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(files, cwd, cache_dir, *extra):
    cmd = [sys.executable, "-m", "mypy", "--strict", "--no-color-output", "--show-error-codes",
           "--cache-dir", str(cache_dir), *extra, *map(str, files)]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=MYPY_TIMEOUT)


def test_package_is_marked_typed():
    package = Path(cysocketserver.__file__).parent
    assert (package / "py.typed").is_file()
    for stub in ("__init__", "servers", "handlers", "mixins", "_engine", "_loop", "_streams",
                 "_hub", "greenlets"):
        assert (package / f"{stub}.pyi").is_file(), f"{stub}.pyi is missing"


def test_example_passes_mypy_strict(tmp_path, mypy_cache):
    # Run from an empty directory: no project config, and only the package under test.
    result = run_mypy([EXAMPLE], tmp_path, mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_catches_misuse(tmp_path, mypy_cache):
    bad = tmp_path / "misuse.py"
    bad.write_text(textwrap.dedent("""\
        import cysocketserver

        class Handler(cysocketserver.StreamRequestHandler):
            def handle(self) -> None:
                line: str = self.rfile.readline()
                self.wfile.write(line)

        server = cysocketserver.TCPServer(("127.0.0.1", 0), Handler)
        server.serve_forever(poll_interval="soon")
        server.handle_request(1)
        engine: int = cysocketserver.IMPLEMENTATION
        cysocketserver.no_such_name
        """))
    result = run_mypy([bad], tmp_path, mypy_cache)
    lines = [line for line in result.stdout.splitlines() if ": error:" in line]
    # One error per misuse, on the line of the misuse, of one of these kinds.
    expected = {5: {"assignment"}, 6: {"arg-type", "call-overload"}, 9: {"arg-type"},
                10: {"call-arg"}, 11: {"assignment"}, 12: {"attr-defined"}}
    found = {}
    for line in lines:
        _path, lineno, _rest = line.split(":", 2)
        found[int(lineno)] = line.rsplit("[", 1)[-1].rstrip("]")
    report = result.stdout + result.stderr
    assert sorted(found) == sorted(expected), report
    for lineno, code in found.items():
        assert code in expected[lineno], report


def test_stubs_match_runtime(tmp_path):
    # Every stub of the package against the module that runs. The compiled modules' stubs can
    # only be checked where they were built (not in a pure-Python install).
    allowlist = tmp_path / "allowlist.txt"
    lines = ALLOWLIST.read_text().splitlines()
    for name in ("cysocketserver._loop", "cysocketserver._streams", "cysocketserver._hub",
                 "cysocketserver._counters"):
        try:
            importlib.import_module(name)
        except ImportError:
            lines.append(name)
    allowlist.write_text("\n".join(lines) + "\n")
    # The bench helpers import optional packages (matplotlib, uvloop, gevent) lazily.
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nignore_missing_imports = True\n")
    cmd = [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(config),
           "--allowlist", str(allowlist), "cysocketserver"]
    result = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                            timeout=MYPY_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_runs(tmp_path):
    # Whatever engine this test run uses (CYSOCKETSERVER_NO_EXTENSIONS passes through).
    result = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"engine: {cysocketserver.IMPLEMENTATION}" in result.stdout
