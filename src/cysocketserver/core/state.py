"""One object per server for everything this package keeps about it.

A server's documented attributes (``socket``, ``server_address``, ``timeout``...) stay where
the stdlib puts them.  What the package adds -- the serve plan, the concurrency model, the
connection registry and its counters, the idle sweep, the PROXY protocol's headers and
refusals, the TLS handshakes' figures, the greenlet servers' state, a prefork parent's
supervisor or a worker's housekeeping -- lives in one ``ServerState``, reached through
``state_of(server)`` and made on first use (a subclass may skip ``BaseServer.__init__``, as the
stdlib allows).  It is the only private key this package writes into a server's ``__dict__``.

A forked prefork worker calls ``become_worker()``: what the parent made is the parent's, so
each part says below whether it survives the fork.
"""
from time import monotonic

__all__ = ["ServerState", "state_of"]

_KEY = "_cysocketserver_state"


class ServerState:
    """The per-server parts, each made by the module that owns it."""

    __slots__ = (
        # Survive a fork: facts about the server, not about a process.
        "started_at",        # monotonic() when the server was built: its uptime
        # Made anew in a worker (become_worker): they hold threads, descriptors or counts
        # that belong to the process that made them.
        "engine_name",       # the engine the registry's counters were built on
        "registry",          # core.registry.ConnectionRegistry, with the server's counters
        "model",             # the concurrency model (models/*), made on first use
        "plan",              # core.plan.Plan of the current serve_forever()/handle_request()
        "idle_sweep",        # core.guards.IdleSweep while idle_timeout is on
        "proxy_headers",     # request -> ProxyHeader (weak keys), made on first header
        "proxy_refused",     # collections.Counter of refused PROXY headers, by cause
        "proxy_logged",      # causes of refusal already logged once
        "tls",               # core.tls.TlsFigures: handshakes by version, failures by cause
        "greenlet",          # the greenlet servers' per-server state
        "supervisor",        # a prefork parent's Supervisor; None in a worker
        # Set only in a prefork worker.
        "housekeeping",      # called after each wake-up of the loop (the worker's heartbeat)
        "shared_listener",   # other processes serve the same listener
    )

    def __init__(self):
        self.started_at = monotonic()
        self._clear()

    def _clear(self):
        self.engine_name = None
        self.registry = None
        self.model = None
        self.plan = None
        self.idle_sweep = None
        self.proxy_headers = None
        self.proxy_refused = None
        self.proxy_logged = set()
        self.tls = None
        self.greenlet = None
        self.supervisor = None
        self.housekeeping = None
        self.shared_listener = False

    def become_worker(self, registry, engine_name, housekeeping):
        """In a forked worker: drop every part the parent made (its threads, hub, plan and
        counts are not this process's), start from ``registry``, and mark the listener as
        shared with the other processes."""
        self._clear()
        self.registry = registry
        self.engine_name = engine_name
        self.housekeeping = housekeeping
        self.shared_listener = True


def state_of(server):
    """The server's ServerState, made on first use."""
    try:
        return server.__dict__[_KEY]
    except KeyError:
        state = server.__dict__[_KEY] = ServerState()
        return state
