"""Picks the engine behind the public classes: the compiled modules, or their pure-Python twins.

The seam is ``core.seam.Engine``: ``ServeLoop``, ``SocketReader``, ``SocketWriter``, ``Hub``,
``Counters``, ``Meter`` and the PROXY protocol parser ``proxyproto``, nothing else.  The public
classes look the engine up when they build a loop, a stream, a hub or a server's counters
(``current()``), so one process can run both: the tests do, through ``use()``.

Set ``CYSOCKETSERVER_NO_EXTENSIONS=1`` to make the pure-Python engine the default.

Every compiled module has its twin in a ``_pure_*.py`` file, except the PROXY protocol parser:
one source, ``_proxyproto.py``, that setup.py also compiles (with the C types of
``_proxyproto.pxd``) into the extension ``_proxyproto``.  Where the extension is built it sits
beside the source under the same name, and ``import _proxyproto`` finds the extension first;
so the pure engine loads the source from its file under a name of its own,
``_pure_proxyproto``, and one process can hold both.  (Timed with ``bench/proxyproto_parse.py``
and counted in instructions, the compiled one source parses v1 and v2 headers at least as fast
as the hand-written ``.pyx`` it replaced.)
"""
import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import types

__all__ = ["IMPLEMENTATION", "available", "current", "load", "use"]


def _compiled():
    from ._counters import Counters, Meter
    from ._hub import Hub
    from ._loop import ServeLoop
    from ._streams import SocketReader, SocketWriter
    from . import _proxyproto

    if not isinstance(_proxyproto.__spec__.loader, importlib.machinery.ExtensionFileLoader):
        # Built without the parser (CYSOCKETSERVER_BUILD_ONLY): the import found the source.
        raise ImportError("cysocketserver._proxyproto is not compiled")
    return types.SimpleNamespace(name="compiled", ServeLoop=ServeLoop, SocketReader=SocketReader,
                                 SocketWriter=SocketWriter, Hub=Hub, Counters=Counters, Meter=Meter,
                                 proxyproto=_proxyproto)


def _pure():
    from ._pure_counters import Counters, Meter
    from ._pure_hub import Hub
    from ._pure_loop import ServeLoop
    from ._pure_streams import SocketReader, SocketWriter

    return types.SimpleNamespace(name="python", ServeLoop=ServeLoop, SocketReader=SocketReader,
                                 SocketWriter=SocketWriter, Hub=Hub, Counters=Counters, Meter=Meter,
                                 proxyproto=_pure_proxyproto())


def _pure_proxyproto():
    """The parser's source, ``_proxyproto.py``, imported as Python under another name."""
    name = __package__ + "._pure_proxyproto"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(__file__), "_proxyproto.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


_LOADERS = {"compiled": _compiled, "python": _pure}
_loaded = {}


def load(name):
    """Engine ``name`` ("compiled" or "python"); ImportError where it cannot be imported."""
    try:
        return _loaded[name]
    except KeyError:
        engine = _loaded[name] = _LOADERS[name]()
        return engine


def available(name):
    try:
        load(name)
    except ImportError:
        return False
    return True


# CYSOCKETSERVER_NO_EXTENSIONS=1: the compiled modules are not even imported.
if not os.environ.get("CYSOCKETSERVER_NO_EXTENSIONS") and available("compiled"):
    _current = load("compiled")
else:
    # No compiler where this was installed (or PyPy): the same seam in Python.
    _current = load("python")
IMPLEMENTATION = _current.name


def current():
    """The engine that new loops, streams and hubs are built on."""
    return _current


@contextlib.contextmanager
def use(name):
    """Build on engine ``name`` ("compiled" or "python") inside the block (for tests)."""
    global _current
    previous, _current = _current, load(name)
    try:
        yield _current
    finally:
        _current = previous
