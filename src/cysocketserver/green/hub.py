"""Per-thread hub access: each OS thread has its own hub, made on first use.

The hub is the engine's ``Hub`` (epoll in C, or ``selectors`` in the pure engine).  In the child
of fork() the parent's hub is let go of, so the child makes a fresh one.
"""
import os
import threading

from .. import _engine
from .._hubcommon import POLLIN, POLLOUT  # the events Hub.wait_fd() waits for

__all__ = ["POLLIN", "POLLOUT", "get_hub", "existing_hub", "io_done", "sleep", "spawn"]

_tls = threading.local()  # .hub: this thread's hub; .owner: its _HubOwner


class _HubOwner:
    """Held by the thread-local storage only: when the thread ends, its hub's descriptors close.

    (The hub itself is kept alive by its own greenlet, which a finished thread cannot end.)
    """

    __slots__ = ("hub",)

    def __init__(self, hub):
        self.hub = hub

    def __del__(self):
        self.hub.close()


def get_hub():
    """This thread's hub, made on first use (on the current engine)."""
    hub = getattr(_tls, "hub", None)
    engine = _engine.current()
    if hub is None or hub.__class__ is not engine.Hub:
        hub = engine.Hub()
        _tls.owner = _HubOwner(hub)
        _tls.hub = hub
    return hub


def existing_hub():
    """This thread's hub, or None where none has been made: never makes one."""
    return getattr(_tls, "hub", None)


def _forget_hub_after_fork():
    """In the child of fork(): this thread's hub shares its epoll set and wake-up descriptor
    with the parent's.  Let go of it (closing only this process's copies); the next get_hub()
    makes a fresh one.  Hubs of the other threads (which do not exist in the child) close when
    their thread-local storage goes."""
    hub = _tls.__dict__.pop("hub", None)
    owner = _tls.__dict__.pop("owner", None)
    if hub is not None:
        hub.abandon()
    del owner


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_hub_after_fork)


def io_done():
    """A socket call completed without waiting: count it against the greenlet's turn."""
    hub = getattr(_tls, "hub", None)
    if hub is not None:  # no hub on this thread: no other greenlet to give way to
        hub.io_done()


def sleep(seconds):
    """Sleep without holding the hub: other greenlets run meanwhile."""
    get_hub().sleep(seconds)


def spawn(function, *args):
    """Run ``function(*args)`` in a new greenlet on this thread's hub; returns the greenlet.

    The greenlet starts when the hub next gets a turn (when the caller waits or sleeps).
    """
    return get_hub().spawn(function, *args)
