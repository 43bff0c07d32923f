"""Picks the engine behind the public classes: the compiled modules, or their pure-Python twins.

The seam is ``core.seam.Engine``: ``ServeLoop``, ``SocketReader``, ``SocketWriter``, ``Hub``,
``Counters``, ``Meter``, the PROXY protocol parser ``proxyproto`` and the ClientHello (SNI)
parser ``clienthello``, nothing else.  The public
classes look the engine up when they build a loop, a stream, a hub or a server's counters
(``current()``), so one process can run both: the tests do, through ``use()``.

Set ``CYSOCKETSERVER_NO_EXTENSIONS=1`` to make the pure-Python engine the default.

Every compiled module has its twin in a ``_pure_*.py`` file, except the two parsers, the PROXY
protocol's and the ClientHello's, built the same way: one source, ``_proxyproto.py``
(``_clienthello.py``), that setup.py also compiles (with the C types of
``_proxyproto.pxd``) into the extension ``_proxyproto``.  Where the extension is built it sits
beside the source under the same name, and ``import _proxyproto`` finds the extension first;
so the pure engine loads the source from its file under a name of its own,
``_pure_proxyproto``, and one process can hold both.  (Timed with ``bench/proxyproto_parse.py``
and counted in instructions, the compiled one source parses v1 and v2 headers at least as fast
as the hand-written ``.pyx`` it replaced.)

The other pairs stay two, on purpose: the compiled serve loop, poller, streams, hub and
counters are written against the system calls themselves (epoll, accept4, recv into the
reader's own buffer, poll with the GIL released, greenlet's C API, counters in a caller's
shared memory), which Python can only reach through the socket, select and greenlet modules.
One source would have to be the slow Python path for both, or two paths in one file.  What
the twins of a pair share is written once beside them (``_loopcommon``, ``_hubcommon``,
``_counterfields``, ``_sendallwriter``), and the same tests run on both engines.
"""
import os
import sys

__all__ = ["IMPLEMENTATION", "available", "current", "load", "use"]


class Engine:
    """One engine's parts.  Some load on first use: ``Hub`` needs the greenlet package, which
    only the greenlet servers use; ``proxyproto`` only servers that receive the PROXY
    protocol use, ``clienthello`` only a proxy that routes TLS by server name, ``relay`` only
    a relay."""

    def __init__(self, name, lazy, **parts):
        self.name = name
        self._lazy = lazy
        self.__dict__.update(parts)

    def __getattr__(self, attribute):
        try:
            loader = self._lazy[attribute]
        except KeyError:
            raise AttributeError(attribute) from None
        value = loader()
        setattr(self, attribute, value)
        return value

    def __repr__(self):
        return "<cysocketserver engine %r>" % self.name


def _compiled_hub():
    from ._hub import Hub

    return Hub


def _compiled_from_python(name):
    """The extension compiled from the one source ``name``.py (its module)."""
    import importlib

    module = importlib.import_module(__package__ + "." + name)
    if type(module.__loader__).__name__ != "ExtensionFileLoader":
        # Built without it (CYSOCKETSERVER_BUILD_ONLY): the import found the source.
        raise ImportError("cysocketserver.%s is not compiled: rebuild the extensions" % name)
    return module


def _compiled_proxyproto():
    return _compiled_from_python("_proxyproto")


def _compiled_clienthello():
    return _compiled_from_python("_clienthello")


def _compiled():
    from ._counters import Counters, Meter
    from ._loop import ServeLoop
    from ._streams import SocketReader, SocketWriter

    return Engine("compiled", {"Hub": _compiled_hub, "proxyproto": _compiled_proxyproto,
                               "clienthello": _compiled_clienthello, "relay": _compiled_relay},
                  ServeLoop=ServeLoop, SocketReader=SocketReader, SocketWriter=SocketWriter,
                  Counters=Counters, Meter=Meter)


def _compiled_relay():
    from . import _relay

    return _relay


def _pure_relay():
    from . import _pure_relay

    return _pure_relay


def _pure_hub():
    from ._pure_hub import Hub

    return Hub


def _pure_proxyproto():
    """The parser's source, ``_proxyproto.py``, imported as Python under another name."""
    return _as_python("_proxyproto")


def _pure_clienthello():
    """The ClientHello parser's source, ``_clienthello.py``, as Python under another name."""
    return _as_python("_clienthello")


def _as_python(source):
    """The module ``source``.py run as Python, named ``_pure`` + source."""
    name = __package__ + "._pure" + source
    if name in sys.modules:
        return sys.modules[name]
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), source + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _pure():
    from ._pure_counters import Counters, Meter
    from ._pure_loop import ServeLoop
    from ._pure_streams import SocketReader, SocketWriter

    return Engine("python", {"Hub": _pure_hub, "proxyproto": _pure_proxyproto,
                             "clienthello": _pure_clienthello, "relay": _pure_relay},
                  ServeLoop=ServeLoop, SocketReader=SocketReader, SocketWriter=SocketWriter,
                  Counters=Counters, Meter=Meter)


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


class use:
    """``with use(name):`` build on engine ``name`` ("compiled" or "python") inside the block
    (for tests)."""

    def __init__(self, name):
        self.engine = load(name)

    def __enter__(self):
        global _current
        self.previous, _current = _current, self.engine
        return self.engine

    def __exit__(self, *exc_info):
        global _current
        _current = self.previous
