"""``relay(a, b)``: copy both directions between two connected stream sockets until both have
ended -- the heart of a TCP proxy's handler.

In a greenlet server's handler the relay runs inside the thread's hub: both sockets are
attached to the hub, whose event dispatch moves the bytes itself (no greenlet switch per
chunk), while the handler's greenlet waits and the others run.  In a thread with no hub it
waits in poll() with the GIL released.  The engine does the work (``_relay``, or
``_pure_relay`` in the pure engine); this module checks the arguments and picks the way.
"""
from . import _engine
from .core.settings import choice, seconds
from .green.hub import existing_hub

__all__ = ["relay", "SPLICE"]

# How the compiled engine moves bulk on Linux: "auto" copies through a buffer and moves a
# direction to splice(2) once one of its reads fills the buffer (a sustained flow); "always"
# splices from the first byte, "never" always copies.  Read at each call.
SPLICE = "auto"
_SPLICE_MODES = {"never": 0, "auto": 1, "always": 2}


def relay(a, b, *, idle_timeout=None):
    """Copy a's bytes to b and b's to a until both directions have ended; returns
    ``(bytes a->b, bytes b->a)``.

    End of stream on one side becomes ``shutdown(SHUT_WR)`` on the other, and the other
    direction carries on.  A reset or an error on either side ends both, and so does
    ``idle_timeout`` seconds (None: no limit) with no byte in either direction; the relay then
    returns normally, with the counts so far.  ``a`` and ``b``: sockets (a greenlet server's
    ``GreenSocket`` too) or anything with ``fileno()``.  They are not closed, and keep their
    blocking mode and timeout.
    """
    idle = seconds("relay() idle_timeout", idle_timeout, none_means="no limit")
    mode = _SPLICE_MODES[choice("cysocketserver.relaying.SPLICE", SPLICE, tuple(_SPLICE_MODES))]
    engine = _engine.current()
    hub = existing_hub()
    if hub is None:
        return engine.relay.relay_in_thread(a, b, idle, mode)
    if type(hub) is not engine.Hub:
        # A hub made while the other engine was current (the tests switch engines).
        engine = next(e for e in map(_engine.load, ("compiled", "python"))
                      if type(hub) is e.Hub)
    return engine.relay.relay_on_hub(hub, a, b, idle, mode)
