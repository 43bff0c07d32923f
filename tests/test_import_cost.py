"""A bare ``import cysocketserver`` loads what every server needs and nothing more.

What only some programs use -- greenlet and the greenlet servers, typing, logging, ipaddress,
traceback, the metrics, the PROXY protocol's policy, prefork, the command line, the bench --
loads when first used.  The list below is the whole of what the bare import adds to what
``import socketserver`` loads: a module added to it is a decision, made here.  (How long the
import takes is measured, not asserted: ``python -X importtime -c "import cysocketserver"``.)
"""
import ast
import subprocess
import sys

import pytest

from support_net import subprocess_env

# The package's own modules, on each engine.
COMMON = {
    "cysocketserver", "cysocketserver._engine",
    "cysocketserver._counterfields", "cysocketserver._loopcommon",
    "cysocketserver.core", "cysocketserver.core.admission", "cysocketserver.core.guards",
    "cysocketserver.core.hooks", "cysocketserver.core.nodelay", "cysocketserver.core.plan",
    "cysocketserver.core.registry", "cysocketserver.core.settings", "cysocketserver.core.state",
    "cysocketserver.handlers", "cysocketserver.servers",
    "cysocketserver.models", "cysocketserver.models.base", "cysocketserver.models.inline",
}
ENGINE = {
    # The compiled streams park on the compiled hub, so it loads (without greenlet).
    "compiled": {"cysocketserver._counters", "cysocketserver._hub", "cysocketserver._hubcommon",
                 "cysocketserver._loop",
                 "cysocketserver._poller", "cysocketserver._streams"},
    "python": {"cysocketserver._pure_counters", "cysocketserver._pure_loop",
               "cysocketserver._pure_epoll", "cysocketserver._pure_streams",
               "cysocketserver._sendallwriter"},
}
# Never at the bare import.
NEVER = {"greenlet", "typing", "logging", "ipaddress", "traceback", "textwrap", "tokenize",
         "argparse", "ctypes", "contextlib", "importlib.util", "ssl", "_ssl", "cysocketserver.greenlets", "cysocketserver.metrics", "cysocketserver.mixins",
         "cysocketserver.threadpool",
         "cysocketserver.prefork", "cysocketserver.cli", "cysocketserver.bench"}

_PROGRAM = """
import sys
before = set(sys.modules)
import socketserver
stdlib = set(sys.modules) - before
del sys.modules["socketserver"]
import cysocketserver
print(sorted(set(sys.modules) - before - stdlib))
print(cysocketserver.IMPLEMENTATION)
"""


def _added(**env):
    proc = subprocess.run([sys.executable, "-c", _PROGRAM], env=subprocess_env(**env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed, implementation = proc.stdout.splitlines()[:2]
    return set(ast.literal_eval(listed)), implementation


@pytest.mark.parametrize("engine", ["compiled", "python"])
def test_the_bare_import_loads_only_what_every_server_needs(engine):
    added, implementation = _added(
        CYSOCKETSERVER_NO_EXTENSIONS="1" if engine == "python" else None)
    if implementation != engine:
        pytest.skip("the compiled extensions are not built")
    # Cython's shared runtime module comes with the compiled engine.
    added = {name for name in added if not name.startswith("_cython_") and name != "cython_runtime"}
    assert not added & NEVER
    expected = COMMON | ENGINE[engine]
    assert added == expected, ("new at import: %s; no longer imported: %s"
                               % (sorted(added - expected), sorted(expected - added)))


def test_the_lazy_names_load_on_first_use():
    code = ("import sys, cysocketserver\n"
            "assert 'greenlet' not in sys.modules\n"
            "cysocketserver.GreenletTCPServer, cysocketserver.prometheus_text\n"
            "from cysocketserver import ThreadingTCPServer, ForkingMixIn\n"
            "assert ThreadingTCPServer.__module__ == 'cysocketserver.mixins'\n"
            "cysocketserver.listen_fds\n"
            "from cysocketserver import _version\n"
            "assert cysocketserver.__version__ == _version.__version__\n"
            "print('greenlet' in sys.modules, 'cysocketserver.prometheus' in sys.modules)\n"
            "print(sorted(set(dir(cysocketserver)) >= set(cysocketserver.__all__) for _ in [0]))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "[True]"]
