"""The timeout of a cooperative socket, kept in Python while the descriptor itself stays
non-blocking, and the loop that makes one of its calls wait that long at most, parked on the
hub.  ``GreenSocket`` and ``GreenTLSSocket`` both take them from here.
"""
from time import monotonic

import _socket

from .hub import io_done

__all__ = ["CooperativeTimeout"]

_ss = _socket.socket


class CooperativeTimeout:
    """``settimeout()``/``gettimeout()``, ``setblocking()``/``getblocking()`` and ``timeout``
    as the stdlib's sockets have them, for a socket whose descriptor is always non-blocking
    (its C timeout 0): the value set is what each blocking call waits at most, parked on the
    hub.  The class using it provides the ``_coop_timeout`` attribute and the
    ``_cysocketserver_wait`` waiter."""

    __slots__ = ()

    def settimeout(self, value, /):
        # An ordinary value on a descriptor already non-blocking is taken as it is: going
        # through the C socket's settimeout() twice would cost two ioctl() calls each time.
        # Anything else gets the stdlib's checks and errors, and leaves the descriptor
        # non-blocking (a socket just wrapped, say, whose C timeout is not 0 yet).
        kind = type(value)
        if ((value is None or ((kind is float or kind is int) and 0 <= value <= 1e9))
                and _ss.gettimeout(self) == 0.0):
            self._coop_timeout = None if value is None else float(value)
            return
        _ss.settimeout(self, value)
        self._coop_timeout = _ss.gettimeout(self)
        _ss.settimeout(self, 0.0)

    def gettimeout(self):
        return self._coop_timeout

    def setblocking(self, flag, /):
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        return self._coop_timeout != 0.0

    @property
    def timeout(self):
        return self._coop_timeout

    def _io(self, method, events, *args):
        """``method(self, *args)`` (a C socket method), parked on the hub while it would block,
        for the socket's timeout at most."""
        try:
            result = method(self, *args)
        except BlockingIOError:
            timeout = self._coop_timeout
            if timeout == 0.0:
                raise
        else:
            io_done()
            return result
        deadline = -1.0 if timeout is None else monotonic() + timeout
        while True:
            if self._cysocketserver_wait(_ss.fileno(self), events, deadline):
                raise TimeoutError("timed out")
            try:
                result = method(self, *args)
            except BlockingIOError:
                pass
            else:
                io_done()
                return result
