"""CPython's own suites of the modules built on socketserver, run on cysocketserver.

Each suite runs in a subprocess (support_cpython_suite.py) that calls
``cysocketserver.install()`` before anything imports socketserver, on every CPython 3.11+
found here (this interpreter, ``python3.N`` on PATH, pyenv's versions; or exactly the
interpreters listed in CYSOCKETSERVER_TEST_PYTHONS, separated by os.pathsep), on each
engine: the compiled one, and the pure-Python one (CYSOCKETSERVER_NO_EXTENSIONS=1 in
the subprocess).  test_socketserver also runs with its ThreadingMixIn and Threading* servers
swapped for the bounded-pool ones (ThreadPoolMixIn).  For another
interpreter the package is built for it from this source tree with pip, once per source
state (kept in pytest's cache directory).  The test process itself never calls install().

The suites spend most of their time waiting on sockets and timeouts, so they run side by
side in a pool (CYSOCKETSERVER_SUITE_JOBS at a time, 8 by default); each test waits for its
own run, and a table of the results is printed at the end of the test run.
test_socketserver also runs on the stdlib's socketserver as a control; for the other suites
the stdlib's own run is made only when ours fails, and its result is put beside the failure.
"""
import concurrent.futures
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import pytest

from support_net import package_root, subprocess_env

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(TESTS_DIR)
RUNNER = os.path.join(TESTS_DIR, "support_cpython_suite.py")

# Longest first, so that the pool finishes them at about the same time.
SUITES = [
    "test_imaplib", "test_ssl", "test_xmlrpc", "test_logging", "test_urllib2_localnet",
    "test_httpservers", "test_docxmlrpc", "test_socketserver", "test_httplib", "test_wsgiref",
    "test_robotparser",
]
ENGINES = ["compiled", "python"]
# What a run serves with: the stdlib, this package, or this package with the pool for threads.
STDLIB, OURS, OURS_POOL = "socketserver", "cysocketserver", "cysocketserver-pool"
MIN_PYTHON = (3, 11)
# Suite runs side by side (they mostly wait), and builds (compiler-bound) two at a time.
SUITE_JOBS = int(os.environ.get("CYSOCKETSERVER_SUITE_JOBS", "8"))
BUILD_JOBS = 2
SUBPROCESS_TIMEOUT = 420
BUILD_TIMEOUT = 600
UNAVAILABLE = 3
RESULT = re.compile(
    r"^SUITE-RESULT ran=(\d+) failures=(\d+) errors=(\d+) skipped=(\d+) implementation=(\w+)$", re.M)


# --------------------------------------------------------------------------- interpreters


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: str  # "3.12.1"

    @property
    def label(self):
        return "py" + ".".join(self.version.split(".")[:2])

    @property
    def is_this_one(self):
        return self.executable == sys.executable


PROBE = ("import sys, sysconfig; print(sys.implementation.name, '%d.%d.%d' % sys.version_info[:3], "
         "bool(sysconfig.get_config_var('Py_GIL_DISABLED')))")


def probe(executable):
    """(implementation, version, free-threaded) of an interpreter, or None if it does not run."""
    try:
        proc = subprocess.run([executable, "-I", "-c", PROBE], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = proc.stdout.split()
    if proc.returncode != 0 or len(fields) != 3:
        return None  # e.g. a pyenv shim for a version that is not selected
    return fields[0], fields[1], fields[2] == "True"


def candidate_executables():
    listed = os.environ.get("CYSOCKETSERVER_TEST_PYTHONS")
    if listed is not None:
        return [path for path in listed.split(os.pathsep) if path]
    found = [shutil.which(f"python3.{minor}") for minor in range(MIN_PYTHON[1], 30)]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for path in sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.*", "bin", "python3"))):
        version = re.match(r"3\.(\d+)", os.path.basename(os.path.dirname(os.path.dirname(path))))
        if version and int(version.group(1)) >= MIN_PYTHON[1]:
            found.append(path)
    return [path for path in found if path]


def discover_interpreters():
    """This interpreter, then one per other CPython minor version (GIL builds, 3.11+)."""
    this = "%d.%d.%d" % sys.version_info[:3]
    chosen = {this.rsplit(".", 1)[0]: Interpreter(sys.executable, this)}
    for executable in candidate_executables():
        info = probe(executable)
        if info is None:
            continue
        implementation, version, free_threaded = info
        minor = version.rsplit(".", 1)[0]
        if implementation != "cpython" or free_threaded or minor in chosen:
            continue
        if tuple(map(int, minor.split("."))) < MIN_PYTHON:
            continue
        chosen[minor] = Interpreter(os.path.abspath(executable), version)
    return list(chosen.values())


INTERPRETERS = discover_interpreters()


# --------------------------------------------------------------------------- packages


class BuildUnavailable(Exception):
    """No source tree to build the package from (the tests run without one): a skip."""


def copy_sources(dest):
    """What pip needs to build the package: the project files, the Cython and Python sources."""
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        if os.path.exists(os.path.join(SOURCE_ROOT, name)):
            shutil.copy2(os.path.join(SOURCE_ROOT, name), dest)
    # Generated files stay behind: the build makes its own, for its interpreter.
    ignore = shutil.ignore_patterns("*.so", "*.pyd", "*.c", "*.o", "*.html", "__pycache__")
    for tree in ("src", "ext"):
        shutil.copytree(os.path.join(SOURCE_ROOT, tree), os.path.join(dest, tree), ignore=ignore)


def source_digest():
    digest = hashlib.sha256()
    for pattern in ("setup.py", "pyproject.toml", "src/cysocketserver/**/*.py", "ext/**/*.pyx",
                    "ext/**/*.pxd", "ext/**/*.h"):
        for path in sorted(glob.glob(os.path.join(SOURCE_ROOT, pattern), recursive=True)):
            digest.update(os.path.relpath(path, SOURCE_ROOT).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]


def build_for(interpreter, cache_dir):
    """A directory holding the package built (compiled modules included) for ``interpreter``."""
    if not os.path.exists(os.path.join(SOURCE_ROOT, "setup.py")):
        raise BuildUnavailable(f"no source tree at {SOURCE_ROOT} to build the package for "
                               f"{interpreter.label}")
    tag = hashlib.sha256(interpreter.executable.encode()).hexdigest()[:8]
    target = os.path.join(cache_dir, f"{interpreter.label}-{tag}-{source_digest()}")
    if os.path.isdir(target):
        return target
    with tempfile.TemporaryDirectory(prefix="cyss-build-", dir=cache_dir) as work:
        source, out = os.path.join(work, "source"), os.path.join(work, "out")
        os.mkdir(source)
        copy_sources(source)
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore",
                   PIP_NO_INPUT="1")
        for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CYSOCKETSERVER_NO_EXTENSIONS",
                     "CYSOCKETSERVER_BUILD_ONLY"):
            env.pop(name, None)
        proc = subprocess.run(
            [interpreter.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
             "--target", out, source],
            env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=BUILD_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"building the package for {interpreter.label} "
                               f"({interpreter.executable}) failed:\n{proc.stdout}\n{proc.stderr}")
        for stale in glob.glob(os.path.join(cache_dir, f"{interpreter.label}-{tag}-*")):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(out, target)
        except OSError:
            if not os.path.isdir(target):  # another test run got there first
                raise
    return target


def pure_copy_for(interpreter, work_dir):
    """The package's Python files alone: all the pure engine needs on any interpreter."""
    target = os.path.join(work_dir, f"pure-{interpreter.label}")
    if not os.path.isdir(target):
        shutil.copytree(
            os.path.join(package_root(), "cysocketserver"), os.path.join(target, "cysocketserver"),
            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return target


# --------------------------------------------------------------------------- runs


@dataclass
class SuiteRun:
    suite: str
    interpreter: Interpreter
    target: str  # STDLIB, OURS or OURS_POOL
    engine: str = "compiled"
    returncode: int = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    problem: str = None  # why it could not run at all
    skipped_why: str = None

    @property
    def summary(self):
        match = RESULT.search(self.stdout)
        if not match:
            return None
        ran, failures, errors, skipped = map(int, match.groups()[:4])
        return {"ran": ran, "failures": failures, "errors": errors, "skipped": skipped,
                "implementation": match.group(5)}

    def report(self):
        return (f"{self.suite} on {self.interpreter.label} ({self.interpreter.executable}), "
                f"{self.target} on the {self.engine} engine, {self.seconds:.0f}s, exit status {self.returncode}\n"
                f"--- stdout ---\n{self.stdout[-5000:]}\n--- stderr ---\n{self.stderr[-20000:]}")


class SuitePool:
    """Runs the wanted suites side by side; each test waits for its own run."""

    def __init__(self, wanted, cache_dir, work_dir):
        self.cache_dir = cache_dir
        self.work_dir = work_dir
        self.lock = threading.Lock()
        self.builders = concurrent.futures.ThreadPoolExecutor(BUILD_JOBS, "cyss-build")
        self.runners = concurrent.futures.ThreadPoolExecutor(SUITE_JOBS, "cyss-suite")
        self.packages = {}
        self.runs = {}
        # This interpreter's runs first: the others may wait for their builds meanwhile.
        # The two engines' runs of one suite apart in time, so that they do not race for ports.
        order = sorted(wanted, key=lambda key: (not key[1].is_this_one, key[3] != "compiled",
                                                SUITES.index(key[0])))
        for key in order:
            self.runs[key] = self.runners.submit(self.run_now, *key)

    def package_path(self, interpreter, engine):
        """PYTHONPATH entry holding the package for ``interpreter`` and ``engine``."""
        with self.lock:
            if (interpreter, engine) not in self.packages:
                if engine == "python":
                    future = concurrent.futures.Future()
                    future.set_result(pure_copy_for(interpreter, self.work_dir))
                else:
                    future = self.builders.submit(build_for, interpreter, self.cache_dir)
                self.packages[interpreter, engine] = future
            future = self.packages[interpreter, engine]
        return future.result()

    def environment(self, interpreter, target, engine):
        env = subprocess_env(CYSOCKETSERVER_NO_EXTENSIONS="1" if engine == "python" else None)
        if interpreter.is_this_one:
            return env
        env.pop("VIRTUAL_ENV", None)
        if target != STDLIB:
            env["PYTHONPATH"] = self.package_path(interpreter, engine)
        else:
            del env["PYTHONPATH"]  # the stdlib's control needs nothing of ours
        return env

    def run_now(self, suite, interpreter, target, engine):
        run = SuiteRun(suite, interpreter, target, engine)
        try:
            env = self.environment(interpreter, target, engine)
        except BuildUnavailable as exc:
            run.skipped_why = str(exc)
            return run
        except Exception as exc:  # reported by the test that waits for this run
            run.problem = str(exc)
            return run
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="cyss-suite-") as cwd:  # for the suites' files
            try:
                proc = subprocess.run(
                    [interpreter.executable, RUNNER, suite, target], env=env, cwd=cwd,
                    stdin=subprocess.DEVNULL, capture_output=True, text=True,
                    timeout=SUBPROCESS_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                run.problem = f"still running after {SUBPROCESS_TIMEOUT}s"
                run.stdout = _text(exc.stdout)
                run.stderr = _text(exc.stderr)
            else:
                run.returncode, run.stdout, run.stderr = proc.returncode, proc.stdout, proc.stderr
        run.seconds = time.monotonic() - started
        return run

    def result(self, suite, interpreter, target, engine):
        key = (suite, interpreter, target, engine)
        if key not in self.runs:  # not collected at start (e.g. a rerun); run it now
            self.runs[key] = self.runners.submit(self.run_now, *key)
        return self.runs[key].result()

    def close(self):
        self.runners.shutdown(wait=True, cancel_futures=True)
        self.builders.shutdown(wait=True, cancel_futures=True)


def _text(data):
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


class SuiteTable:
    """Prints the suites' results at the end of the test run (a pytest plugin object)."""

    def __init__(self, pool):
        self.pool = pool

    def pytest_terminal_summary(self, terminalreporter):
        done = [f.result() for f in self.pool.runs.values() if f.done() and not f.cancelled()]
        if not done:
            return
        terminalreporter.section("CPython suites (ran/failures/errors/skipped)")
        labels = [i.label for i in INTERPRETERS]
        rows = {}
        for run in done:
            name = {STDLIB: f"{run.suite} (stdlib)", OURS: f"{run.suite} ({run.engine})",
                    OURS_POOL: f"{run.suite} ({run.engine}, pool)"}[run.target]
            summary = run.summary
            if summary:
                cell = "{ran}/{failures}/{errors}/{skipped}".format(**summary) + f" {run.seconds:.0f}s"
            else:
                cell = "skipped" if run.skipped_why or run.returncode == UNAVAILABLE else "no result"
            rows.setdefault(name, {})[run.interpreter.label] = cell
        width = max(len(name) for name in rows)
        terminalreporter.write_line(" ".join([" " * width] + [f"{label:>18}" for label in labels]))
        for name in sorted(rows):
            cells = [f"{rows[name].get(label, '-'):>18}" for label in labels]
            terminalreporter.write_line(" ".join([name.ljust(width)] + cells))


def _collected_keys(session):
    keys = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        module = getattr(item, "module", None)
        if module is None or module.__name__ != __name__ or callspec is None:
            continue
        target = {"test_stdlib_control": STDLIB, "test_socketserver_on_the_pool": OURS_POOL}.get(
            item.originalname, OURS)
        keys.append((callspec.params["suite"], callspec.params["interpreter"], target,
                     callspec.params.get("engine", "compiled")))
    return keys


@pytest.fixture(scope="module")
def suite_pool(request, tmp_path_factory):
    try:
        cache_dir = str(request.config.cache.mkdir("cpython-suite-builds"))
    except AttributeError:  # the cache plugin is off: build for this run only
        cache_dir = str(tmp_path_factory.mktemp("cpython-suite-builds"))
    pool = SuitePool(_collected_keys(request.session), cache_dir,
                     str(tmp_path_factory.mktemp("cpython-suite")))
    request.config.pluginmanager.register(SuiteTable(pool), "cysocketserver-suite-table")
    try:
        yield pool
    finally:
        pool.close()


# --------------------------------------------------------------------------- tests


def interpreter_params(suites, engines=ENGINES):
    return [pytest.param(suite, interpreter, engine, id=f"{interpreter.label}-{engine}-{suite}")
            for interpreter in INTERPRETERS for engine in engines for suite in suites]


def checked(run):
    """The run's summary; skips where the interpreter has no such suite."""
    if run.skipped_why:
        pytest.skip(run.skipped_why)
    if run.problem:
        pytest.fail(f"{run.problem}\n{run.report()}")
    if run.returncode == UNAVAILABLE:
        pytest.skip(f"{run.interpreter.label} ({run.interpreter.executable}) has no "
                    f"test.{run.suite}: {run.stdout.strip()}")
    summary = run.summary
    assert summary, run.report()
    return summary


def passed(suite_pool, run):
    """Our run passed the suite, on the engine it was for, with most of it not skipped."""
    summary = checked(run)
    if run.returncode != 0 or summary["failures"] or summary["errors"]:
        # Suites running side by side can collide on a port that test.support's
        # find_unused_port() handed to both (test_httplib's source-address test does): a
        # failure gets one more run, alone, before it counts.
        run = suite_pool.run_now(run.suite, run.interpreter, run.target, run.engine)
        summary = checked(run)
    if run.returncode != 0 or summary["failures"] or summary["errors"]:
        control = suite_pool.run_now(run.suite, run.interpreter, STDLIB, run.engine)
        pytest.fail(f"{run.report()}\n\n--- the same suite on the stdlib's socketserver: "
                    f"exit status {control.returncode}, {control.summary} ---")
    # No silent fallback to the other engine.
    assert summary["implementation"] == run.engine, run.report()
    assert summary["ran"] >= 5 and summary["skipped"] <= summary["ran"] // 4, run.report()


@pytest.mark.parametrize("suite,interpreter,engine", interpreter_params(SUITES))
def test_cpython_suite(suite_pool, suite, interpreter, engine):
    passed(suite_pool, suite_pool.result(suite, interpreter, OURS, engine))


@pytest.mark.parametrize("suite,interpreter,engine", interpreter_params(["test_socketserver"]))
def test_socketserver_on_the_pool(suite_pool, suite, interpreter, engine):
    """ThreadPoolMixIn keeps the stdlib's contract for ThreadingMixIn: the whole suite passes
    with every Threading* class replaced by its ThreadPool* counterpart."""
    passed(suite_pool, suite_pool.result(suite, interpreter, OURS_POOL, engine))


@pytest.mark.parametrize("suite,interpreter,engine",
                         interpreter_params(["test_socketserver"], engines=["compiled"]))
def test_stdlib_control(suite_pool, suite, interpreter, engine):
    """The runner itself: the stdlib passes the suite in this environment."""
    run = suite_pool.result(suite, interpreter, STDLIB, engine)
    summary = checked(run)
    assert run.returncode == 0 and summary["implementation"] == "stdlib", run.report()
    assert (summary["failures"], summary["errors"]) == (0, 0), run.report()
    assert summary["ran"] > 20, run.report()
