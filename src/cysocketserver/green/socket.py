"""``GreenSocket``, the cooperative ``socket.socket``, and ``connect()``, which makes one
(or, in a thread that runs no hub, a plain socket), with a connect deadline and, for a proxy,
a PROXY protocol header sent first.

A call that would block parks the greenlet on this thread's hub instead of the thread.
"""
import errno
import os
import socket
from time import monotonic

import _socket

from .hub import POLLIN, POLLOUT, existing_hub, get_hub, io_done
from .timeouts import CooperativeTimeout
from .to_thread import to_thread

__all__ = ["GreenSocket", "connect", "as_green_socket"]

# What connect_ex() answers while a non-blocking connect() is under way.
_CONNECTING = frozenset(
    code for code in (getattr(errno, name, None)
                      for name in ("EINPROGRESS", "EAGAIN", "EWOULDBLOCK", "EALREADY"))
    if code is not None
)
# The C methods, called on a GreenSocket past its own overrides.
_ss = _socket.socket


class GreenSocket(CooperativeTimeout, socket.socket):
    """A ``socket.socket`` whose blocking calls park the greenlet instead of the thread.

    The descriptor itself is non-blocking; ``settimeout()``/``gettimeout()`` keep the timeout
    you set, and a call that runs out of it raises ``TimeoutError('timed out')`` as the
    stdlib's does.  The compiled ``rfile``/``wfile`` drive the descriptor directly and wait
    through ``_cysocketserver_wait``.  On a greenlet server, the bytes its recv/send methods
    move are counted in the server's ``stats()`` (``_meter``).
    """

    __slots__ = ("_coop_timeout", "_hub", "_meter")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        super().__init__(family, type, proto, fileno)
        self._hub = None
        self._meter = None
        self._coop_timeout = socket.getdefaulttimeout()
        _ss.settimeout(self, 0.0)
        hub = existing_hub()
        if hub is not None:
            # A descriptor number closed behind the hub's back may be this one now.
            hub.forget_fd(_ss.fileno(self))

    @classmethod
    def from_socket(cls, sock):
        """Take over a plain socket.socket (which is detached), keeping its timeout."""
        timeout = sock.gettimeout()
        new = cls(sock.family, sock.type, sock.proto, sock.detach())
        new._coop_timeout = timeout
        return new

    # -- waiting --------------------------------------------------------------------------------

    @property
    def _cysocketserver_wait(self):
        """``wait(fd, events, deadline)``: park until fd is ready for events (POLLIN/POLLOUT) or
        until the time.monotonic() deadline (< 0: none); True if it timed out.

        The current thread's hub's own method, so that the compiled rfile/wfile, which take it
        once, call straight into the hub.
        """
        hub = self._hub
        if hub is None or hub is not existing_hub():
            # First use, another thread's hub, or one left behind by fork().
            hub = self._hub = get_hub()
        return hub.wait_fd

    # -- the blocking calls -----------------------------------------------------------------------

    def recv(self, bufsize, flags=0, /):
        data = self._io(_ss.recv, POLLIN, bufsize, flags)
        if self._meter is not None:
            self._meter.received += len(data)
        return data

    def recv_into(self, buffer, nbytes=0, flags=0):
        got = self._io(_ss.recv_into, POLLIN, buffer, nbytes, flags)
        if self._meter is not None:
            self._meter.received += got
        return got

    def recvfrom(self, bufsize, flags=0, /):
        return self._io(_ss.recvfrom, POLLIN, bufsize, flags)

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self._io(_ss.recvfrom_into, POLLIN, buffer, nbytes, flags)

    def send(self, data, flags=0, /):
        sent = self._io(_ss.send, POLLOUT, data, flags)
        if self._meter is not None:
            self._meter.sent += sent
        return sent

    def sendto(self, data, /, *flags_and_address):
        return self._io(_ss.sendto, POLLOUT, data, *flags_and_address)

    def sendall(self, data, flags=0, /):
        with memoryview(data) as view, view.cast("B") as remaining:
            total = len(remaining)
            sent = 0
            deadline = None
            try:
                while sent < total:
                    try:
                        sent += _ss.send(self, remaining[sent:], flags)
                        io_done()
                        continue
                    except BlockingIOError:
                        timeout = self._coop_timeout
                        if timeout == 0.0:
                            raise
                    if deadline is None:
                        deadline = -1.0 if timeout is None else monotonic() + timeout
                    if self._cysocketserver_wait(_ss.fileno(self), POLLOUT, deadline):
                        raise TimeoutError("timed out")
            finally:
                if self._meter is not None:
                    self._meter.sent += sent

    def sendfile(self, file, offset=0, count=None):
        """Send a file's bytes with send(), which parks the greenlet where os.sendfile()
        would wait in a selector; returns the number of bytes sent."""
        return self._sendfile_use_send(file, offset, count)

    def accept(self):
        """Wait (cooperatively) for a connection: returns (GreenSocket, address)."""
        fd, address = self._io(_ss._accept, POLLIN)
        return GreenSocket(self.family, self.type, self.proto, fileno=fd), address

    def connect(self, address, /):
        """Connect to ``address``, parking the greenlet until done or the timeout runs out."""
        err = _ss.connect_ex(self, address)
        if err == 0:
            return
        if err not in _CONNECTING:
            raise OSError(err, os.strerror(err))
        timeout = self._coop_timeout
        if timeout == 0.0:
            raise BlockingIOError(err, os.strerror(err))
        deadline = -1.0 if timeout is None else monotonic() + timeout
        if self._cysocketserver_wait(_ss.fileno(self), POLLOUT, deadline):
            raise TimeoutError("timed out")
        err = self.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address, /):
        try:
            self.connect(address)
        except TimeoutError:
            return errno.EAGAIN
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    # -- closing ----------------------------------------------------------------------------------

    def _forget(self):
        hub = self._hub
        fd = _ss.fileno(self)
        if hub is not None and fd >= 0:
            hub.forget_fd(fd)

    def _real_close(self, _ss=_ss):
        self._forget()
        _ss.close(self)

    def detach(self):
        self._forget()
        return super().detach()


def as_green_socket(request):
    """The request as a cooperative socket (a plain accepted socket is taken over)."""
    if type(request) is socket.socket:
        return GreenSocket.from_socket(request)
    return request


# The values of connect()'s proxy_protocol, as the builder names the versions.
_PROXY_VERSIONS = {"v1": 1, "v2": 2}


def _proxy_header(proxy_protocol, proxy_addresses):
    """The PROXY header connect() sends first (None for none), or TypeError/ValueError."""
    if proxy_protocol is None:
        if proxy_addresses is not None:
            raise ValueError("proxy_addresses is given without proxy_protocol "
                             "(\"v1\" or \"v2\")")
        return None
    version = _PROXY_VERSIONS.get(proxy_protocol) if isinstance(proxy_protocol, str) else None
    if version is None:
        raise ValueError("proxy_protocol must be \"v1\", \"v2\" or None, not %r"
                         % (proxy_protocol,))
    if proxy_addresses is None:
        raise ValueError("proxy_protocol=%r needs proxy_addresses=(client_address, "
                         "server_address)" % (proxy_protocol,))
    if not isinstance(proxy_addresses, (tuple, list)) or len(proxy_addresses) != 2:
        raise TypeError("proxy_addresses must be a pair (client_address, server_address), "
                        "each (ip, port), not %r" % (proxy_addresses,))
    from .._proxybuild import build  # only where a header is sent

    return build(version, proxy_addresses[0], proxy_addresses[1])


def _connect_deadline(timeout, connect_timeout):
    """The time.monotonic() by which the connect must be done (None: no limit)."""
    if connect_timeout is None:
        # The socket's own timeout bounds the connect too; 0 (a non-blocking socket
        # afterwards) leaves the connect itself unbounded, as None does.
        limit = timeout or None
    else:
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)):
            raise TypeError("connect_timeout must be a number of seconds or None, not %s"
                            % type(connect_timeout).__name__)
        if not connect_timeout > 0:
            raise ValueError("connect_timeout must be more than 0 seconds (None: no limit)")
        limit = connect_timeout
    return None if limit is None else monotonic() + limit


def _candidates(address):
    """(family, type, proto, address) to try in order, as socket.create_connection does."""
    if isinstance(address, (str, bytes)) and hasattr(socket, "AF_UNIX"):
        return [(socket.AF_UNIX, socket.SOCK_STREAM, 0, address)]
    host, port = address[:2]
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                   socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
    except (socket.gaierror, UnicodeError):
        # A name: resolved in a worker thread, so that a greenlet does not hold the hub.
        infos = to_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    return [(family, kind, proto, addr) for family, kind, proto, _name, addr in infos]


def _tls_settings(address, ssl_context, server_hostname):
    """The server name to check (and send) for connect()'s TLS, or TypeError/ValueError."""
    import ssl  # only where TLS is asked for: a bare connect() does not load it

    if not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError("ssl_context must be an ssl.SSLContext or None, not %s"
                        % type(ssl_context).__name__)
    if server_hostname is not None:
        if not isinstance(server_hostname, str) or not server_hostname:
            raise TypeError("server_hostname must be a non-empty str or None, not %r"
                            % (server_hostname,))
        return server_hostname
    if isinstance(address, (str, bytes)):
        return None                       # a Unix socket path names no host
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode("ascii")
    try:
        socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return host or None               # a name: checked against the certificate and sent
    return None                           # an IP address: no name to send


def _handshake(sock, ssl_context, server_hostname, deadline):
    """``sock`` wrapped in TLS for the client side, its handshake done by the deadline."""
    try:
        if type(sock) is GreenSocket:
            from .tls import wrap_client_side

            tls = wrap_client_side(ssl_context, sock, server_hostname)
        else:
            tls = ssl_context.wrap_socket(sock, server_hostname=server_hostname,
                                          do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        timeout = tls.gettimeout()
        if deadline is not None:
            left = deadline - monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            tls.settimeout(left)
        tls.do_handshake()
        tls.settimeout(timeout)
    except BaseException:
        tls.close()
        raise
    return tls


def connect(address, timeout=None, source_address=None, *, connect_timeout=None,
            proxy_protocol=None, proxy_addresses=None, ssl_context=None, server_hostname=None):
    """A client socket connected to ``address`` (host, port) or a Unix socket path.

    As ``socket.create_connection(address, timeout, source_address)``: ``timeout`` is the
    socket's timeout afterwards; each address a name resolves to is tried in order (in a
    worker thread, the name is resolved without holding the hub).  ``connect_timeout`` bounds
    the connect, all the addresses together (default: ``timeout``): past it, TimeoutError.
    With ``proxy_protocol`` "v1" or "v2", a PROXY protocol header naming
    ``proxy_addresses=(client_address, server_address)`` is sent first, in one write.
    In a thread that runs a hub, the socket is a GreenSocket whose waits park the greenlet;
    in any other thread, a plain blocking socket.socket.

    With ``ssl_context`` (an ssl.SSLContext), the connection is TLS: the client side of the
    context's handshake runs before connect() returns (after the PROXY header, if any), within
    the same ``connect_timeout`` as the connect; the result is a GreenTLSSocket in a greenlet,
    an ssl.SSLSocket in a thread.  ``server_hostname`` is the name sent (SNI) and checked
    against the certificate; default: the host of ``address`` when it is a name.  A failed
    handshake raises ssl.SSLError (ssl.SSLCertVerificationError for a certificate), one past
    the deadline TimeoutError.
    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a number of seconds or None, not %s"
                            % type(timeout).__name__)
        if not timeout >= 0:
            raise ValueError("timeout must be 0 or more seconds (None: no limit)")
    header = _proxy_header(proxy_protocol, proxy_addresses)
    if ssl_context is not None:
        server_hostname = _tls_settings(address, ssl_context, server_hostname)
    elif server_hostname is not None:
        raise ValueError("server_hostname is given without ssl_context")
    kind = socket.socket if existing_hub() is None else GreenSocket
    candidates = _candidates(address)
    deadline = _connect_deadline(timeout, connect_timeout)
    error = None
    for family, sock_type, proto, addr in candidates:
        if deadline is not None:
            left = deadline - monotonic()
            if left <= 0:
                error = TimeoutError("timed out")
                break
        sock = kind(family, sock_type, proto)
        try:
            sock.settimeout(None if deadline is None else left)
            if source_address:
                sock.bind(source_address)
            sock.connect(addr)
            sock.settimeout(timeout)
            if header is not None:
                sock.sendall(header)
        except OSError as exc:
            error = exc
            sock.close()
            continue
        except BaseException:
            sock.close()
            raise
        if ssl_context is None:
            return sock
        # The handshake's failure is the answer: another address would give the same.
        return _handshake(sock, ssl_context, server_hostname, deadline)
    if error is not None:
        try:
            raise error
        finally:
            error = None
    raise OSError("getaddrinfo returns an empty list")
