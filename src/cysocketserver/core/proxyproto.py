"""The PROXY protocol, receiving (HAProxy's proxy-protocol.txt, versions 1 and 2): the policy.

A server with ``proxy_protocol`` set reads the header its proxy sends at the start of every
connection before verify_request(), then runs the request with ``client_address`` set to the
original client.  This module decides which versions are accepted, from which peers, how long
to wait, where the header is read, and what happens to a bad one; the engine's parser
(``_proxyproto`` or its twin ``_pure_proxyproto``) only turns bytes into a ``ProxyHeader``.

Where the header is read: in the context that runs the request (the handler's thread, pooled
thread or greenlet) when the server's process_request() is the package's own, so a slow proxy
holds up no other client; verify_request() then runs there too, once the header is read.
Elsewhere (the plain servers, ForkingMixIn, a process_request() of the user's) it is read in
the serving thread, which waits up to ``proxy_protocol_timeout`` for it.

Nothing after the header is consumed: bytes are peeked, and only those known to belong to the
header are read.  A refused header closes the connection, is counted in
``server.proxy_protocol_refused`` (a Counter by cause) and is logged once per cause per server.
"""
import ipaddress
import logging
import numbers
import socket
import weakref
from time import monotonic

from .. import _engine
from .._proxycommon import ANY, V1, V1_MAX, V2, ProxyProtocolError

__all__ = ["ProxyIntake", "make_intake", "deferred_intake", "header_of", "refusals"]

logger = logging.getLogger("cysocketserver")

VERSIONS = {"v1": V1, "v2": V2, "any": ANY}


def refusals(server):
    """The server's Counter of refused headers by cause, made on first use."""
    from collections import Counter

    try:
        return server.__dict__["_proxy_refused_"]
    except KeyError:
        counter = server.__dict__["_proxy_refused_"] = Counter()
        return counter


def _headers(server):
    try:
        return server.__dict__["_proxy_headers_"]
    except KeyError:
        # Keyed by the request's socket: an entry goes when the socket does.
        headers = server.__dict__["_proxy_headers_"] = weakref.WeakKeyDictionary()
        return headers


def header_of(server, request):
    """The ProxyHeader received on ``request``, or None."""
    headers = server.__dict__.get("_proxy_headers_")
    if headers is None:
        return None
    try:
        return headers.get(request)
    except TypeError:  # not weak-referenceable: never recorded
        return None


def _networks(trusted):
    if isinstance(trusted, (str, ipaddress.IPv4Network, ipaddress.IPv6Network)):
        trusted = (trusted,)
    try:
        items = list(trusted)
    except TypeError:
        raise TypeError("proxy_protocol_trusted must be CIDRs (strings or ip_network objects), "
                        "not %r" % (trusted,)) from None
    networks = []
    for item in items:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(item)
        elif isinstance(item, str):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError("proxy_protocol_trusted: %s" % exc) from None
        else:
            raise TypeError("proxy_protocol_trusted must hold CIDR strings, not %r" % (item,))
    return tuple(networks)


def _timeout(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("proxy_protocol_timeout must be a number of seconds, not %r" % (value,))
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("proxy_protocol_timeout must be a positive, finite number of seconds, "
                         "not %r" % (value,))
    return float(value)


def _defers(server, model):
    """Whether the request's own context (thread, pooled thread, greenlet) can read the header:
    only where process_request() and what it runs are the package's, which go through
    ``policy.serve_request``."""
    from ..mixins import ThreadingMixIn
    from ..models.pool import PooledThreads
    from ..models.threads import ThreadPerRequest

    def ours(name, owner):
        return getattr(getattr(server, name, None), "__func__", None) is getattr(owner, name)

    if getattr(model, "cooperative", False):
        try:
            from ..greenlets import GreenletMixIn
        except ImportError:
            return False
        return ours("process_request", GreenletMixIn) and ours("process_request_greenlet",
                                                               GreenletMixIn)
    if type(model) in (ThreadPerRequest, PooledThreads):
        return ours("process_request", ThreadingMixIn) and ours("process_request_thread",
                                                                ThreadingMixIn)
    return False


def make_intake(server, model):
    """The server's ProxyIntake, or None where ``proxy_protocol`` is None; raises ValueError or
    TypeError for a setting that cannot work."""
    mode = getattr(server, "proxy_protocol", None)
    if mode is None:
        return None
    if mode not in VERSIONS:
        raise ValueError('proxy_protocol must be None, "v1", "v2" or "any", not %r' % (mode,))
    sock = getattr(server, "socket", None)
    if getattr(sock, "type", socket.SOCK_STREAM) != socket.SOCK_STREAM:
        raise ValueError("proxy_protocol needs a stream server: datagrams carry no header")
    return ProxyIntake(server, VERSIONS[mode], _networks(server.proxy_protocol_trusted),
                       _timeout(server.proxy_protocol_timeout), _defers(server, model))


def deferred_intake(server):
    """The intake that serve_request() runs before verify_request(), or None."""
    intake = getattr(server.__dict__.get("_plan_"), "proxy", None)
    if intake is not None and intake.deferred:
        return intake
    return None


class ProxyIntake:
    """Reads and checks one connection's header; one per plan."""

    def __init__(self, server, accepted, trusted, timeout, deferred):
        self.server = server
        self.accepted = accepted
        self.trusted = trusted
        self.timeout = timeout
        self.deferred = deferred
        self.parser = _engine.current().proxyproto
        self.refused = refusals(server)
        self.logged = server.__dict__.setdefault("_proxy_logged_", set())

    def is_trusted(self, peer):
        if not isinstance(peer, tuple):
            return True  # a Unix-domain peer is a local process
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = (address,) if mapped is None else (address, mapped)
        return any(candidate in network for candidate in candidates for network in self.trusted)

    def receive(self, request, client_address):
        """The address the request is to be handled with: the original client's, or the real
        peer's (LOCAL, UNSPEC, UNKNOWN); None when the header was refused (the caller releases
        the request)."""
        try:
            if not self.is_trusted(client_address):
                raise ProxyProtocolError("untrusted", "peer not in proxy_protocol_trusted")
            header = self.read(request)
        except ProxyProtocolError as exc:
            self.refuse(exc.cause, exc.detail, client_address)
            return None
        try:
            _headers(self.server)[request] = header
        except TypeError:
            pass
        if header.source is None:
            return client_address
        entry = self.server._connection_registry.get(request)
        if entry is not None:
            entry.client_address = header.source
        return header.source

    def read(self, sock):
        """The header at the start of ``sock``, no byte further."""
        parser, accepted = self.parser, self.accepted
        deadline = monotonic() + self.timeout
        saved = sock.gettimeout()
        data = b""
        length = 0
        try:
            while True:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    raise ProxyProtocolError("slow", "no whole header within %.3g s" % self.timeout)
                sock.settimeout(remaining)
                if length:
                    # Every byte up to ``length`` is header: read without peeking.
                    chunk = sock.recv(length - len(data))
                else:
                    # Where the header ends is not known yet: look without taking, then take
                    # only what is certainly header (all of it until a v1 line's LF, or up to
                    # the v2 length once the fixed part is in).
                    peeked = sock.recv(max(V1_MAX - len(data), 16), socket.MSG_PEEK)
                    if not peeked:
                        raise ProxyProtocolError("truncated", "connection ended in the header")
                    length = parser.scan(data + peeked, accepted)
                    take = len(peeked) if not length else min(len(peeked), length - len(data))
                    chunk = sock.recv(take)
                if not chunk:
                    raise ProxyProtocolError("truncated", "connection ended in the header")
                data += chunk
                if not length:
                    length = parser.scan(data, accepted)
                if length and len(data) == length:
                    return parser.parse(data, accepted)
        except TimeoutError:
            raise ProxyProtocolError("slow", "no whole header within %.3g s" % self.timeout) from None
        except OSError as exc:
            raise ProxyProtocolError("truncated", "connection failed in the header: %s"
                                     % (exc.strerror or exc)) from None
        finally:
            try:
                sock.settimeout(saved)
            except OSError:
                pass

    def refuse(self, cause, detail, client_address):
        self.refused[cause] += 1
        if cause not in self.logged:
            self.logged.add(cause)
            logger.warning("PROXY protocol header refused (%s) from %r: %s; further refusals "
                           "for this cause are counted in proxy_protocol_refused, not logged",
                           cause, client_address, detail)
