"""``GreenTLSSocket``: an ``ssl.SSLSocket`` whose blocking calls park the greenlet, not the hub.

OpenSSL drives the descriptor itself, which stays non-blocking (the C socket's timeout is 0):
every TLS call either completes at once or says what it waits for (SSLWantReadError,
SSLWantWriteError), and only then does the greenlet park on the hub until the descriptor is
ready -- so bytes OpenSSL already holds (``pending()``) are always read without waiting.  A
write that had to wait is retried with the same buffer, as OpenSSL requires.  The timeout you
set (``settimeout()``) bounds each call, as for the stdlib's sockets; each call that completed
without waiting counts against the greenlet's turn on the hub (``io_done()``), so one fast
client cannot keep the hub from the others.
"""
import ssl
from time import monotonic

import _socket

from .hub import POLLIN, POLLOUT, existing_hub, get_hub, io_done
from .timeouts import CooperativeTimeout

__all__ = ["GreenTLSSocket", "wrap_server_side", "wrap_client_side", "CLOSE_TIMEOUT"]

# The longest unwrap() waits for the peer's close_notify when the socket has no timeout: a
# peer that never answers does not hold the greenlet.
CLOSE_TIMEOUT = 5.0
# sendall() hands OpenSSL this much at a time (16 records), so that a large buffer is encrypted
# a slice per turn.
_SEND_SLICE = 256 * 1024

_ss = _socket.socket
_length = len  # read()'s parameter is named len, as SSLSocket.read's


class GreenTLSSocket(CooperativeTimeout, ssl.SSLSocket):
    """An ``ssl.SSLSocket`` for the greenlet servers: read/write/handshake/unwrap park the
    greenlet on this thread's hub; ``gettimeout()`` is the timeout you set (the descriptor
    itself is non-blocking)."""

    _coop_timeout = None
    _hub = None
    _meter = None  # the connection's byte meter, on a greenlet server (stats())

    # -- waiting ------------------------------------------------------------------------------

    @property
    def _cysocketserver_wait(self):
        """``wait(fd, events, deadline)``: the hub's wait_fd (True when it timed out)."""
        hub = self._hub
        if hub is None or hub is not existing_hub():
            hub = self._hub = get_hub()
        return hub.wait_fd

    def _retry(self, call, *args):
        """``call(*args)`` (a TLS step), again after each wait it asks for, with the same
        arguments, until it completes or the timeout runs out."""
        deadline = None
        while True:
            try:
                result = call(*args)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                if self._coop_timeout == 0.0:
                    raise
                wanted = exc
            else:
                io_done()
                return result
            events = POLLIN if isinstance(wanted, ssl.SSLWantReadError) else POLLOUT
            wanted = None
            timeout = self._coop_timeout
            if deadline is None:
                deadline = -1.0 if timeout is None else monotonic() + timeout
            if self._cysocketserver_wait(_ss.fileno(self), events, deadline):
                raise TimeoutError("timed out")

    # -- TLS ----------------------------------------------------------------------------------

    def do_handshake(self, block=False):
        self._check_connected()
        self._retry(self._sslobj.do_handshake)

    def read(self, len=1024, buffer=None):
        self._checkClosed()
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        try:
            if buffer is not None:
                got = self._retry(sslobj.read, len, buffer)
            else:
                got = self._retry(sslobj.read, len)
        except ssl.SSLError as exc:
            if exc.args[0] == ssl.SSL_ERROR_EOF and self.suppress_ragged_eofs:
                got = 0 if buffer is not None else b""
            else:
                raise
        if self._meter is not None:
            self._meter.received += got if buffer is not None else _length(got)
        return got

    def write(self, data):
        self._checkClosed()
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        # After a want-write OpenSSL must be given the same buffer again: _retry does.
        sent = self._retry(sslobj.write, data)
        if self._meter is not None:
            self._meter.sent += sent
        return sent

    def sendall(self, data, flags=0):
        self._checkClosed()
        if self._sslobj is None:
            return self._io(_ss.sendall, POLLOUT, data, flags)
        if flags != 0:
            raise ValueError("non-zero flags not allowed in calls to sendall() on %s"
                             % self.__class__)
        with memoryview(data) as view, view.cast("B") as octets:
            total = len(octets)
            done = 0
            while done < total:
                done += self.write(octets[done:done + _SEND_SLICE])

    def recv(self, buflen=1024, flags=0):
        if self._sslobj is None:
            self._checkClosed()
            return self._io(_ss.recv, POLLIN, buflen, flags)
        return super().recv(buflen, flags)

    def recv_into(self, buffer, nbytes=None, flags=0):
        if self._sslobj is None:
            self._checkClosed()
            return self._io(_ss.recv_into, POLLIN, buffer, nbytes or 0, flags)
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data, flags=0):
        self._checkClosed()
        if self._sslobj is None:
            return self._io(_ss.send, POLLOUT, data, flags)
        if flags != 0:
            raise ValueError("non-zero flags not allowed in calls to send() on %s"
                             % self.__class__)
        return self.write(data)

    def unwrap(self):
        """Send close_notify and wait for the peer's (at most the socket's timeout, or
        CLOSE_TIMEOUT without one); returns the socket, now plain."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        saved = self._coop_timeout
        if saved is None:
            self._coop_timeout = CLOSE_TIMEOUT
        try:
            sock = self._retry(sslobj.shutdown)
        finally:
            self._coop_timeout = saved
        self._sslobj = None
        return sock

    def shutdown(self, how):
        # Unlike SSLSocket.shutdown(), keep the TLS state: a guard (idle_timeout, drain) cuts
        # the connection with this while the handler may be reading; its read then ends as
        # at the end of the stream rather than with "closed or unwrapped".
        self._checkClosed()
        _ss.shutdown(self, how)

    # -- closing ------------------------------------------------------------------------------

    def _forget(self):
        hub = self._hub
        fd = _ss.fileno(self)
        if hub is not None and fd >= 0:
            hub.forget_fd(fd)

    def _real_close(self):
        self._forget()
        super()._real_close()

    def detach(self):
        self._forget()
        return super().detach()


def wrap_server_side(context, sock):
    """``sock`` (a GreenSocket) as a GreenTLSSocket for the server side of ``context``, its
    handshake not started (core.tls drives it); the meter and timeout carry over."""
    meter = getattr(sock, "_meter", None)
    tls = GreenTLSSocket._create(sock=sock, server_side=True, do_handshake_on_connect=False,
                                 suppress_ragged_eofs=True, server_hostname=None,
                                 context=context, session=None)
    tls._meter = meter
    return tls


def wrap_client_side(context, sock, server_hostname):
    """``sock`` (a connected GreenSocket) as a GreenTLSSocket for the client side of
    ``context``, its handshake not started (``connect()`` drives it)."""
    return GreenTLSSocket._create(sock=sock, server_side=False, do_handshake_on_connect=False,
                                  suppress_ragged_eofs=True, server_hostname=server_hostname,
                                  context=context, session=None)
