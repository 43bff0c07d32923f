"""The proxy's handler and server classes: each connection picks an upstream, connects to it
(retrying the next eligible one when a connect fails), relays both ways until both ends are
done, and counts what it did.

``ProxyMixIn`` goes before a stream server class (``GreenletTCPServer`` by default: every
connection and the health checks are greenlets on one hub).  ``configure(settings)`` sets
what new connections use -- called again on a reload, it replaces the upstream set at once,
while open connections keep the upstream they have.
"""
import logging
import threading
import time
from time import monotonic

import cysocketserver
from cysocketserver.core.proxyproto import header_of
from cysocketserver.greenlets import get_hub

from . import health, tls
from .balance import make_balancer
from .counters import Board, exposition
from .upstreams import Upstream, UpstreamSet

__all__ = ["ProxyState", "ProxyHandler", "ProxyMixIn"]

log = logging.getLogger("cysocketserver")

# At most one line per kind of failure this often; the lines between are counted.
_LOG_EVERY = 10.0

class _Throttled:
    """Log lines of one kind at most once per _LOG_EVERY seconds, saying how many were
    left out: a dead upstream costs one line, never a line (or a traceback) per client."""

    def __init__(self):
        self._next = {}
        self._skipped = {}

    def warning(self, kind, message, *args):
        now = monotonic()
        if now < self._next.get(kind, 0.0):
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        skipped = self._skipped.pop(kind, 0)
        self._next[kind] = now + _LOG_EVERY
        if skipped:
            message += " (and %d more like it in the last %g s)" % (skipped, _LOG_EVERY)
        log.warning(message, *args)


class ProxyState:
    """What a new connection uses: the settings, the upstreams and the balancer; for TLS, the
    context to the upstreams (None: plain) and the routes by server name ({name:
    UpstreamSet}, None: no passthrough)."""

    def __init__(self, settings, upstreams, balancer, upstream_context=None, routes=None):
        self.settings = settings
        self.upstreams = upstreams
        self.balancer = balancer
        self.upstream_context = upstream_context
        self.routes = routes


class ProxyHandler(cysocketserver.BaseRequestHandler):
    """Relays one client connection to an upstream."""

    def handle(self):
        server = self.server
        state = server.proxy_state          # this connection's, whatever a reload does next
        upstreams = state.upstreams
        if state.routes is not None:
            upstreams = self._route(state)
            if upstreams is None:
                return
        # Only a PROXY header for the upstream names the address the client connected to:
        # without one, that lookup (a getsockname() call) is work for nothing.
        local_address = (self._local_address() if state.settings.send_proxy is not None
                         else None)
        connected = server.connect_upstream(state, self.client_address, local_address,
                                            upstreams)
        if connected is None:
            return
        upstream, sock = connected
        sent = received = 0
        # TLS terminated on either side: the bytes go through the SSL objects, which relay()
        # (a copy between descriptors) cannot do.
        terminated = (getattr(self.request, "_sslobj", None) is not None
                      or state.upstream_context is not None)
        try:
            if terminated:
                sent, received = tls.copy_both_ways(self.request, sock,
                                                    state.settings.idle_timeout)
            else:
                sent, received = cysocketserver.relay(self.request, sock,
                                                      idle_timeout=state.settings.idle_timeout)
        finally:
            sock.close()
            upstream.active -= 1
            counters = upstream.counters
            counters.add("closed")
            counters.add("sent", sent)
            counters.add("received", received)

    def _route(self, state):
        """The upstreams for the server name this connection's ClientHello asks for (the
        default ones for a name with no route, or none); None once it is refused."""
        server = self.server
        pause = (cysocketserver.sleep if isinstance(server, cysocketserver.GreenletMixIn)
                 else time.sleep)
        name = tls.read_server_name(self.request, state.settings.client_hello_timeout, pause)
        if name is tls.REFUSED:
            server.client_hellos_refused += 1
            server.proxy_log.warning("client hello", "closed a connection from %s: no TLS "
                                     "ClientHello within %g s", self.client_address[0]
                                     if isinstance(self.client_address, tuple) else "",
                                     state.settings.client_hello_timeout)
            return None
        if name is not None:
            return state.routes.get(name.lower().rstrip("."), state.upstreams)
        return state.upstreams

    def _local_address(self):
        """The address the client connected to: the PROXY header's, when one came."""
        header = header_of(self.server, self.request)
        if header is not None and header.destination is not None:
            return header.destination
        return self.request.getsockname()


class ProxyMixIn:
    """The proxy's server: put before a stream server class; ``configure()`` before serving."""

    proxy_state = None
    board = None
    proxy_log = None
    # Connections passed through by server name that sent no ClientHello in time, or bytes
    # that were none (this process's count).
    client_hellos_refused = 0

    # -- the settings --------------------------------------------------------------------------

    def configure(self, settings):
        """Use ``settings`` (a config.Settings) for new connections from now on; upstreams
        whose name stays keep their state and their open connections."""
        if self.board is None:
            self.board = Board()
        old = self.proxy_state
        known = old.upstreams.by_name if old is not None else {}
        upstreams = []
        for spec in settings.upstreams:
            upstream = known.get(spec.name)
            if upstream is None:
                upstream = Upstream(spec, self.board.column(spec.name))
            else:
                upstream.spec = spec         # a new weight or limit applies at once
            upstreams.append(upstream)
        if old is not None and old.settings.balance == settings.balance:
            balancer = old.balancer
        else:
            balancer = make_balancer(settings.balance)
        routes = None
        if settings.sni:
            routes = {}
            known = dict(known)
            for route in (old.routes or {}).values() if old is not None else ():
                known.update(route.by_name)
            known.update((upstream.name, upstream) for upstream in upstreams)
            for name, spec in settings.sni:
                upstream = known.get(spec.name)
                if upstream is None:
                    upstream = known[spec.name] = Upstream(spec, self.board.column(spec.name))
                routes[name] = UpstreamSet([upstream])
        if self.proxy_log is None:
            self.proxy_log = _Throttled()
        self.proxy_state = ProxyState(settings, UpstreamSet(upstreams), balancer,
                                      tls.upstream_context(settings), routes)

    # -- connecting ----------------------------------------------------------------------------

    def connect_upstream(self, state, client_address, local_address, upstreams=None):
        """(upstream, connected socket) for a client, or None once every eligible upstream
        (of ``upstreams``, default: the configured ones) has failed (retries + 1 attempts at
        most).  With upstream TLS, the handshake is part of the connect.  local_address (what
        the client connected to) is read only for a PROXY header to the upstream: None will do
        without one."""
        settings = state.settings
        if upstreams is None:
            upstreams = state.upstreams
        tls_options = {}
        if state.upstream_context is not None:
            tls_options["ssl_context"] = state.upstream_context
        client_host = client_address[0] if isinstance(client_address, tuple) else ""
        header = None
        if settings.send_proxy is not None:
            header = dict(proxy_protocol=settings.send_proxy,
                          proxy_addresses=(tuple(client_address[:2]), tuple(local_address[:2])))
        tried = []
        for _attempt in range(settings.retries + 1):
            candidates = upstreams.eligible(tried)
            if not candidates:
                break
            upstream = state.balancer.pick(candidates, client_host)
            tried.append(upstream)
            upstream.active += 1      # counted while connecting, for leastconn and limits
            try:
                if tls_options:
                    # The upstream's host as written (a name or an IP address) is what its
                    # certificate must name.
                    tls_options["server_hostname"] = upstream.spec.host
                sock = cysocketserver.connect(upstream.address,
                                              connect_timeout=settings.connect_timeout,
                                              **(header or {}), **tls_options)
            except (OSError, ValueError) as exc:
                upstream.active -= 1
                upstream.counters.add("failures")
                reason = ("timed out after %g s" % settings.connect_timeout
                          if isinstance(exc, TimeoutError) else str(exc.strerror or exc))
                if settings.health_check_interval:
                    upstream.failed(settings.fall, "connect: " + reason)
                self.proxy_log.warning(("connect", upstream.name),
                                          "connect to upstream %s failed: %s", upstream.name,
                                          reason)
                continue
            upstream.counters.add("opened")
            if settings.health_check_interval:
                upstream.succeeded(settings.rise)
            return upstream, sock
        self.proxy_log.warning(
            "none", "no upstream took a connection from %s (%s); closed it", client_host,
            "tried %s" % ", ".join(upstream.name for upstream in tried) if tried
            else "none is up with room")
        return None

    # -- serving -------------------------------------------------------------------------------

    def serve_forever(self, poll_interval=0.5):
        """Serve, with the health checks beside: a task on this thread's hub (greenlet
        servers) or a thread of their own (the others)."""
        if isinstance(self, cysocketserver.GreenletMixIn):
            get_hub()
            checks = cysocketserver.spawn(health.run, lambda: self.proxy_state)
            try:
                return super().serve_forever(poll_interval)
            finally:
                checks.kill()
        stop = threading.Event()
        thread = threading.Thread(target=_checks_in_thread, args=(self, stop), daemon=True,
                                  name="proxy-health-checks")
        thread.start()
        try:
            return super().serve_forever(poll_interval)
        finally:
            stop.set()

    # -- what operators see ----------------------------------------------------------------------

    def upstream_figures(self):
        """{upstream name: figures} of the configured upstreams, from every process."""
        figures = self.board.snapshot()
        return {upstream.name: figures[upstream.name] for upstream in self.proxy_state.upstreams}

    def upstream_metrics(self):
        """The per-upstream series in Prometheus text."""
        return exposition(self.board.snapshot(),
                          [upstream.name for upstream in self.proxy_state.upstreams])

    def ready(self):
        """Whether at least one upstream is up (for /readyz)."""
        return any(row["up"] for row in self.upstream_figures().values())


def _checks_in_thread(server, stop):
    """The health checks of a threading server: a thread with a hub of its own."""
    get_hub()
    checks = cysocketserver.spawn(health.run, lambda: server.proxy_state)
    while not stop.is_set():
        cysocketserver.sleep(0.2)
    checks.kill()
