"""The proxy's TLS: the contexts (terminating clients' TLS, speaking TLS to the upstreams), the
server name a passed-through connection asks for, and the copy between TLS-terminated sides.

``relay()`` moves bytes between descriptors, under OpenSSL's feet: where one side is TLS
terminated here, the bytes have to go through the SSL objects, so those connections are copied
by two cooperative tasks on the hub (``copy_both_ways``).  A connection passed through by server
name is not terminated: its ClientHello is only peeked at, and ``relay()`` moves it untouched.
"""
import socket
from time import monotonic

import cysocketserver
from cysocketserver import _engine

from .config import ConfigError

__all__ = ["server_context", "upstream_context", "read_server_name", "copy_both_ways",
           "REFUSED"]

# read_server_name()'s answer for a connection that sent no ClientHello in time or bytes that
# are none.
REFUSED = object()
_CHUNK = 64 * 1024
# Peeking again finds the same bytes until more arrive: the waits between peeks grow from the
# first to the last (a ClientHello is one or two segments, so there are rarely any).
_FIRST_PAUSE = 0.002
_LAST_PAUSE = 0.05


def server_context(settings):
    """The server-side SSLContext of tls_cert/tls_key, or None; ConfigError for a bad file."""
    if settings.tls_cert is None:
        return None
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except OSError as exc:
        raise ConfigError("cannot read the TLS certificate or key: %s: %s"
                          % (getattr(exc, "filename", None) or settings.tls_cert,
                             exc.strerror or exc)) from None
    return context


def upstream_context(settings):
    """The client-side SSLContext for the upstreams (verifying their certificates against
    upstream_ca, else the system's), or None; ConfigError for a bad file."""
    if not settings.upstream_tls:
        return None
    import ssl

    try:
        return ssl.create_default_context(cafile=settings.upstream_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("cannot read the upstream CA file %s: %s"
                          % (settings.upstream_ca, exc.strerror or exc)) from None


def read_server_name(sock, timeout, pause):
    """The server name in the ClientHello at the start of ``sock`` (None: it names none),
    read with MSG_PEEK so that the bytes stay for the upstream; REFUSED for bytes that are no
    ClientHello, one too large, or none within ``timeout`` seconds.  ``pause(seconds)``
    sleeps (cooperatively in a greenlet)."""
    parser = _engine.current().clienthello
    deadline = monotonic() + timeout
    saved = sock.gettimeout()
    seen = 0
    wait = _FIRST_PAUSE
    try:
        wanted, name = parser.server_name(b"")
        while True:
            left = deadline - monotonic()
            if left <= 0:
                return REFUSED
            sock.settimeout(left)
            data = sock.recv(wanted, socket.MSG_PEEK)
            if not data:
                return REFUSED                      # closed before its ClientHello
            if len(data) == seen:
                pause(min(wait, left))
                wait = min(wait * 2, _LAST_PAUSE)
                continue
            seen = len(data)
            wait = _FIRST_PAUSE
            wanted, name = parser.server_name(data)
            if wanted == 0:
                return name
    except (OSError, ValueError):                   # the parser's error is a ValueError
        return REFUSED
    finally:
        try:
            sock.settimeout(saved)
        except OSError:
            pass


def copy_both_ways(a, b, idle_timeout=None):
    """Copy a's bytes to b and b's to a, through their SSL objects where they are TLS, until
    both directions have ended (or either fails, or both are silent ``idle_timeout`` seconds);
    returns (bytes a->b, bytes b->a).  In a greenlet: the other direction is a task."""
    last = [monotonic()]
    counts = [0, 0]

    def pump(source, target, index):
        """One direction; False if it failed (which ends the other)."""
        try:
            while True:
                try:
                    data = source.recv(_CHUNK)
                except TimeoutError:
                    if monotonic() - last[0] < idle_timeout:
                        continue                    # the other direction is busy
                    return False
                if not data:
                    break
                target.sendall(data)
                counts[index] += len(data)
                last[0] = monotonic()
        except (OSError, ValueError):
            return False
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return True

    timeouts = a.gettimeout(), b.gettimeout()
    a.settimeout(idle_timeout)
    b.settimeout(idle_timeout)
    try:
        back = cysocketserver.spawn(pump, b, a, 1)
        try:
            if pump(a, b, 0):
                back.join()
        finally:
            back.kill()
    finally:
        for sock, timeout in zip((a, b), timeouts):
            try:
                sock.settimeout(timeout)
            except OSError:
                pass
    return counts[0], counts[1]
