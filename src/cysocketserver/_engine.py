"""Picks the engine behind the public classes: the compiled modules, or their pure-Python twins.

The seam is ``core.seam.Engine``: ``ServeLoop``, ``SocketReader``, ``SocketWriter``, ``Hub``,
``Counters``, ``Meter`` and the PROXY protocol parser ``proxyproto``, nothing else.  The public
classes look the engine up when they build a loop, a stream, a hub or a server's counters
(``current()``), so one process can run both: the tests do, through ``use()``.

Set ``CYSOCKETSERVER_NO_EXTENSIONS=1`` to make the pure-Python engine the default.
"""
import os

__all__ = ["IMPLEMENTATION", "available", "current", "load", "use"]


class Engine:
    """One engine's parts.  ``Hub`` is imported on first use: it needs the greenlet package,
    which only the greenlet servers use."""

    def __init__(self, name, hub_module, **parts):
        self.name = name
        self._hub_module = hub_module
        self.__dict__.update(parts)

    def __getattr__(self, attribute):
        if attribute != "Hub":
            raise AttributeError(attribute)
        module = __import__(__package__ + self._hub_module, fromlist=["Hub"])
        self.Hub = module.Hub
        return self.Hub

    def __repr__(self):
        return "<cysocketserver engine %r>" % self.name


def _compiled():
    from ._counters import Counters, Meter
    from ._loop import ServeLoop
    from ._streams import SocketReader, SocketWriter
    from . import _proxyproto
    from . import _relay

    return Engine("compiled", "._hub", ServeLoop=ServeLoop, SocketReader=SocketReader,
                  SocketWriter=SocketWriter, Counters=Counters, Meter=Meter,
                  proxyproto=_proxyproto, relay=_relay)


def _pure():
    from ._pure_counters import Counters, Meter
    from ._pure_loop import ServeLoop
    from ._pure_streams import SocketReader, SocketWriter
    from . import _pure_proxyproto
    from . import _pure_relay

    return Engine("python", "._pure_hub", ServeLoop=ServeLoop, SocketReader=SocketReader,
                  SocketWriter=SocketWriter, Counters=Counters, Meter=Meter,
                  proxyproto=_pure_proxyproto, relay=_pure_relay)


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
