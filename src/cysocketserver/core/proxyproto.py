"""The PROXY protocol, receiving (HAProxy's proxy-protocol.txt, versions 1 and 2): the policy.

A server with ``proxy_protocol`` set reads the header its proxy sends at the start of every
connection before verify_request(), then runs the request with ``client_address`` set to the
original client.  This module decides which versions are accepted, from which peers, how long
to wait, where the header is read, and what happens to a bad one; the engine's parser
(``_proxyproto``, compiled or run as Python) only turns bytes into a ``ProxyHeader``.

Where the header is read: in the context that runs the request (the handler's thread, pooled
thread or greenlet) when the server's process_request() is the package's own, so a slow proxy
holds up no other client; verify_request() then runs there too, once the header is read.
Elsewhere (the plain servers, ForkingMixIn, a process_request() of the user's) it is read in
the serving thread, which waits up to ``proxy_protocol_timeout`` for it.

Nothing after the header is consumed: bytes are peeked, and only those known to belong to the
header are read.  A refused header closes the connection, is counted in
``server.proxy_protocol_refused`` (a Counter by cause) and is logged once per cause per server.
"""
import socket
from time import monotonic

from .. import _engine
from .._proxycommon import ANY, V1, V1_MAX, V2, ProxyProtocolError
from .admission import defers_to_request_context
from .settings import checked, choice, seconds
from .state import state_of

__all__ = ["HeaderReader", "make_header_reader", "header_of", "refusals"]

VERSIONS = {"v1": V1, "v2": V2, "any": ANY}


def refusals(server):
    """The server's Counter of refused headers by cause, made on first use."""
    state = state_of(server)
    if state.proxy_refused is None:
        from collections import Counter

        state.proxy_refused = Counter()
    return state.proxy_refused


def header_of(server, request):
    """The ProxyHeader received on ``request``, or None."""
    headers = state_of(server).proxy_headers
    if headers is None:
        return None
    try:
        return headers.get(request)
    except TypeError:  # not weak-referenceable: never recorded
        return None


def _networks(trusted):
    import ipaddress

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


def make_header_reader(server, model):
    """The server's HeaderReader, or None where ``proxy_protocol`` is None; raises ValueError or
    TypeError for a setting that cannot work."""
    mode = checked(server, "proxy_protocol", choice, (None,) + tuple(VERSIONS))
    if mode is None:
        return None
    sock = getattr(server, "socket", None)
    if getattr(sock, "type", socket.SOCK_STREAM) != socket.SOCK_STREAM:
        raise ValueError("proxy_protocol needs a stream server: datagrams carry no header")
    return HeaderReader(server, VERSIONS[mode], _networks(server.proxy_protocol_trusted),
                        checked(server, "proxy_protocol_timeout", seconds),
                        defers_to_request_context(server, model))


class HeaderReader:
    """Reads and checks each connection's header; one per plan."""

    def __init__(self, server, accepted, trusted, timeout, deferred):
        self.server = server
        self.accepted = accepted
        self.trusted = trusted
        self.timeout = timeout
        self.deferred = deferred
        self.parser = _engine.current().proxyproto
        self.refused = refusals(server)
        self.state = state_of(server)

    def is_trusted(self, peer):
        if not isinstance(peer, tuple):
            return True  # a Unix-domain peer is a local process
        import ipaddress

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
        state = self.state
        if state.proxy_headers is None:
            # Keyed by the request's socket: an entry goes when the socket does.
            import weakref

            state.proxy_headers = weakref.WeakKeyDictionary()
        try:
            state.proxy_headers[request] = header
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
        logged = self.state.proxy_logged
        if cause not in logged:
            logged.add(cause)
            import logging

            logging.getLogger("cysocketserver").warning("PROXY protocol header refused (%s) from %r: %s; further refusals "
                           "for this cause are counted in proxy_protocol_refused, not logged",
                           cause, client_address, detail)
