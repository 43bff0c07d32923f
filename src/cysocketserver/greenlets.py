"""Greenlet servers: each request's handler in its own greenlet, all on one OS thread.

``GreenletMixIn`` runs serve_forever() on a hub (the engine's ``Hub``: epoll in C, or
``selectors`` in the pure engine) in the thread that calls it, and handles every request in a
new greenlet.  Handlers keep the blocking style of ``StreamRequestHandler``: ``rfile``,
``wfile`` and ``self.request`` are cooperative, so a call that would block parks the greenlet
and the hub runs the others.  A call that blocks the thread itself (``time.sleep()``, a plain
blocking socket, a blocking library) freezes every client; use these instead:

- ``sleep()``: sleep without holding the hub;
- ``connect()``: a cooperative client socket;
- ``to_thread()``: run a blocking function in a worker thread and wait for it without holding
  the hub (at most ``TO_THREAD_MAX_THREADS`` workers, a setting that may be assigned here);
- ``spawn()``: run more work in a greenlet of its own on the same hub, as a ``Task`` to
  ``join()`` or ``kill()``;
- ``GreenSocket``: the cooperative ``socket.socket``; ``get_hub()``.

This module gathers the public names; each piece lives in its own module of
``cysocketserver.green`` (the dispatch model in ``cysocketserver.models.greenlet``).
"""
import sys
import types

# First, so that without the greenlet package this import fails with ImportError(name="greenlet").
from greenlet import GreenletExit, getcurrent

from ._hubcommon import HubBlockedWarning
from .green.hub import get_hub, sleep
from .green.servers import GreenletMixIn, GreenletTCPServer, GreenletUDPServer
from .green.socket import GreenSocket, connect
from .green.tasks import Task, spawn
from .green.to_thread import to_thread

# Not in __all__, but reached here by code written when this module held the whole layer
# (the tests, the benchmarks, the settings the README names).
from .green import to_thread as _to_thread_module
from .green.hub import POLLIN, POLLOUT, _HubOwner, _forget_hub_after_fork, _tls
from .green.hub import existing_hub as _existing_hub, io_done as _io_done
from .green.servers import BLOCK_WARNING_ENV, _block_warning
from .green.socket import _CONNECTING, _ss, as_green_socket as _cooperative
from .green.to_thread import (TO_THREAD_ENV, _default_to_thread_threads, _to_thread_pool_lock,
                              _to_thread_workers)
from .green.waiter import HubWaiter
from .models.greenlet import Greenlets, GreenletState as _State

__all__ = [
    "GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "GreenSocket",
    "connect", "sleep", "spawn", "Task", "to_thread", "get_hub", "HubBlockedWarning",
]

if hasattr(__import__("socket"), "AF_UNIX"):
    from .green.servers import GreenletUnixDatagramServer, GreenletUnixStreamServer

    __all__ += ["GreenletUnixStreamServer", "GreenletUnixDatagramServer"]


def _setting_of(module, name):
    """A module attribute that reads and assigns ``module.name``, where the setting is used."""
    def get(_front):
        return getattr(module, name)

    def assign(_front, value):
        setattr(module, name, value)

    return property(get, assign, doc=f"{module.__name__}.{name}")


class _FrontModule(types.ModuleType):
    """This module's type.  Settings read at each call by the module that uses them are not
    copied here: reading one here reads it there, and an assignment here
    (``greenlets.TO_THREAD_MAX_THREADS = 8``, as documented) is made there, where it takes
    effect."""

    TO_THREAD_MAX_THREADS = _setting_of(_to_thread_module, "TO_THREAD_MAX_THREADS")
    _to_thread_pool = _setting_of(_to_thread_module, "_to_thread_pool")

    def __dir__(self):
        settings = {name for name, value in vars(_FrontModule).items()
                    if isinstance(value, property)}
        return sorted(set(super().__dir__()) | settings)


sys.modules[__name__].__class__ = _FrontModule
