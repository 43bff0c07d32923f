"""TLS on the server side: the policy.

A stream server with ``ssl_context`` set wraps every accepted connection
(``context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)``) and drives
the handshake itself, bounded by ``tls_handshake_timeout`` as a whole (not per read).  The
handler then gets the TLS socket as ``self.request``.

The order, for every request: the PROXY header (it precedes the ClientHello), the handshake,
the per-client limit (where the PROXY header moved it), verify_request(), the handler.

Where the handshake runs -- the same place as a PROXY header's reading:

- in the request's own context (its thread, pooled thread or greenlet) when the server's
  process_request() and the hook the model runs there are the package's own; a slow or silent
  client then holds nothing but its socket and that context;
- in the child process for ForkingMixIn, where the model says it admits there
  (``Model.admits_in_child``): the serving thread wraps the socket (no I/O), the child runs
  the handshake, then verify_request(), then the handler.  A process_request() of the user's
  that skips the child's admission still hands its handler a TLS socket, whose handshake
  OpenSSL then runs on its first read;
- elsewhere in the serving thread: for the plain servers that is the request's own context
  anyway (one request at a time); a process_request() of the user's is called with the TLS
  socket once the handshake is done.

A handshake that fails closes the connection, is counted by cause (``stats()``:
``tls_handshake_failures``) and logged once per cause per server, without a traceback.
The causes: "timeout" (not done within tls_handshake_timeout), "not_tls" (the client spoke
something else, plain HTTP say), "closed" (it went away), "certificate" (its certificate was
refused, with ``verify_mode`` CERT_REQUIRED), "alert" (the client aborted: it distrusts the
server's certificate, say) and "protocol" (anything else: no shared version or cipher...).

Sockets of other classes than ``socket.socket`` (the greenlet servers' cooperative socket) are
wrapped by the function their layer registers with ``register_wrapper``, so that TLS on them
stays cooperative.  Nothing here imports ``ssl`` before a server with ``ssl_context`` serves.
"""
import socket
from time import monotonic

from .settings import checked, seconds
from .state import state_of

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "TlsPolicy", "make_tls", "register_wrapper",
           "figures", "HandshakeFailed"]

# Seconds a client has for its whole handshake: a ClientHello and the client's Finished over
# a slow mobile link fit many times over, and a silent client holds its socket no longer.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

# OpenSSL's reasons for a first record that is not TLS at all.
_NOT_TLS = frozenset(["HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "WRONG_VERSION_NUMBER",
                      "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE",
                      "RECORD_LENGTH_MISMATCH", "BAD_PACKET_LENGTH"])

# socket class -> wrap(context, sock): for sockets that are not plain (registered by the layer
# that owns the class; a subclass is looked up by its own class only).
_wrappers: "dict[type, object]" = {}


def register_wrapper(socket_class, wrap):
    """Wrap sockets of ``socket_class`` with ``wrap(context, sock)`` (which returns an
    ``ssl.SSLSocket`` whose handshake has not started) instead of ``context.wrap_socket``."""
    _wrappers[socket_class] = wrap


class HandshakeFailed(Exception):
    def __init__(self, cause, detail):
        super().__init__(cause, detail)
        self.cause = cause
        self.detail = detail


class TlsFigures:
    """A server's handshakes: failures by cause, successes by negotiated version, and the
    causes already logged; ``ServerState.tls``."""

    __slots__ = ("lock", "failures", "versions", "logged")

    def __init__(self):
        import threading
        from collections import Counter

        self.lock = threading.Lock()  # handler threads count at once
        self.failures = Counter()
        self.versions = Counter()
        self.logged = set()


def figures(server):
    """The server's TlsFigures, made on first use."""
    state = state_of(server)
    if state.tls is None:
        state.tls = TlsFigures()
    return state.tls


def make_tls(server, model, deferred):
    """The server's TlsPolicy, or None where ``ssl_context`` is None; TypeError or ValueError
    for settings that cannot work.  ``deferred``: the model runs the handshake in the request's
    own context (see core.admission)."""
    context = getattr(server, "ssl_context", None)
    if context is None:
        return None
    if not callable(getattr(context, "wrap_socket", None)):
        raise TypeError("%s.ssl_context must be an ssl.SSLContext (or None), not %r"
                        % (type(server).__name__, context))
    sock = getattr(server, "socket", None)
    if getattr(sock, "type", socket.SOCK_STREAM) != socket.SOCK_STREAM:
        raise ValueError("ssl_context needs a stream server: use DTLS elsewhere for datagrams")
    import ssl

    if isinstance(sock, ssl.SSLSocket):
        raise ValueError("%s has both ssl_context and a listener wrapped with wrap_socket(): "
                         "each connection would be wrapped twice; keep one of them"
                         % type(server).__name__)
    timeout = checked(server, "tls_handshake_timeout", seconds)
    in_child = not deferred and getattr(model, "admits_in_child", False)
    return TlsPolicy(server, context, timeout, deferred, in_child)


class TlsPolicy:
    """Wraps each connection and drives its handshake; one per plan."""

    def __init__(self, server, context, timeout, deferred, in_child):
        self.server = server
        self.context = context
        self.timeout = timeout
        self.deferred = deferred      # in the request's thread/pooled thread/greenlet
        self.in_child = in_child      # in ForkingMixIn's child
        self.figures = figures(server)

    def accept(self, request, client_address):
        """``(sock, done)``: the request as a TLS socket and True once its handshake is done;
        or what to release and False when it failed (counted and logged)."""
        tls, done = self.wrap(request, client_address)
        if done:
            done = self.handshake(tls, client_address)
        return tls, done

    def wrap(self, request, client_address):
        """``(sock, done)``: the request as a TLS socket whose handshake has not started (no
        I/O yet) and True; or the request and False when it failed.  From here on the
        connection registry knows the request as its TLS socket, which keeps the timeout the
        accepted socket had."""
        wrap = _wrappers.get(type(request))
        try:
            if wrap is None:
                tls = self.context.wrap_socket(request, server_side=True,
                                               do_handshake_on_connect=False)
            else:
                tls = wrap(self.context, request)
        except OSError as exc:  # the connection failed before anything was read
            self.failed("closed", exc.strerror or str(exc), client_address)
            return request, False
        self.server._connection_registry.replace(request, tls)
        return tls, True

    def handshake(self, tls, client_address):
        """Drive ``tls``'s handshake to its end; whether it succeeded (a failure is counted
        and logged)."""
        try:
            drive_handshake(tls, monotonic() + self.timeout)
        except HandshakeFailed as exc:
            self.failed(exc.cause, exc.detail, client_address)
            return False
        tally = self.figures
        version = tls.version()
        with tally.lock:
            tally.versions[version] += 1
        return True

    def notify_close(self, request):
        """Tell a TLS client that the server is done (close_notify), so that it sees the
        end of the stream rather than a truncation; never waits for its answer."""
        unwrap = getattr(request, "unwrap", None)
        if unwrap is None:
            return
        try:
            request.settimeout(0.0)
            unwrap()
        except Exception:
            # The answer is not awaited (SSLWantReadError), or the connection is gone, was
            # cut or was unwrapped by the handler already.
            pass

    def failed(self, cause, detail, client_address):
        tally = self.figures
        with tally.lock:
            tally.failures[cause] += 1
            first = cause not in tally.logged
            tally.logged.add(cause)
        if first:
            import logging

            logging.getLogger("cysocketserver").warning(
                "TLS handshake failed (%s) with %r: %s; further failures for this cause are "
                "counted in stats()['tls_handshake_failures'], not logged",
                cause, client_address, detail)


def drive_handshake(tls, deadline):
    """Run ``tls``'s handshake to its end by ``deadline`` (time.monotonic()) as a whole:
    non-blocking steps, each wait bounded by what is left -- through the socket's own
    ``_cysocketserver_wait`` where it has one (a cooperative socket parks its greenlet), poll()
    otherwise.  Raises HandshakeFailed."""
    import ssl

    wait = getattr(tls, "_cysocketserver_wait", None) or _poll_wait
    saved = tls.gettimeout()
    try:
        tls.settimeout(0.0)
        fd = tls.fileno()
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                events = _POLLIN
            except ssl.SSLWantWriteError:
                events = _POLLOUT
            if monotonic() >= deadline or wait(fd, events, deadline):
                raise HandshakeFailed("timeout", "no handshake within the timeout")
    except HandshakeFailed:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise HandshakeFailed("certificate", exc.verify_message or str(exc)) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        raise HandshakeFailed("closed", str(exc)) from None
    except ssl.SSLError as exc:
        reason = exc.reason or ""
        if reason in _NOT_TLS:
            cause = "not_tls"
        elif "ALERT" in reason:
            cause = "alert"
        else:
            cause = "protocol"
        raise HandshakeFailed(cause, str(exc)) from None
    except OSError as exc:
        raise HandshakeFailed("closed", exc.strerror or str(exc)) from None
    except (ValueError, AttributeError):
        # A guard (idle_timeout, drain) shut the connection down meanwhile, which lets go of
        # its TLS state.
        if getattr(tls, "_sslobj", True) is None:
            raise HandshakeFailed("closed", "shut down by the server") from None
        raise
    finally:
        try:
            tls.settimeout(saved)
        except OSError:
            pass


_POLLIN = 1
_POLLOUT = 4


def _poll_wait(fd, events, deadline):
    """Wait until ``fd`` is ready for ``events`` or ``deadline``; True when it timed out."""
    import select

    remaining = deadline - monotonic()
    if remaining <= 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, (select.POLLIN if events & _POLLIN else 0)
                        | (select.POLLOUT if events & _POLLOUT else 0))
        return not poller.poll(remaining * 1000.0)
    readable, writable, _ = select.select([fd] if events & _POLLIN else [],
                                          [fd] if events & _POLLOUT else [], [], remaining)
    return not (readable or writable)
