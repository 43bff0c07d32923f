"""A server's statistics as one plain dict (``BaseServer.stats()``), read from its connection
registry, its counters (kept in the engine), its concurrency model and, with TLS, its
handshakes' figures (kept on the server state: by version and by cause, as the PROXY
protocol's refusals)."""
from time import monotonic

from .._counterfields import DECLARED
from .state import state_of

__all__ = ["snapshot", "counter_figures", "tls_figures"]


def counter_figures(totals):
    """The counters' figures as ``stats()`` names them, from ``totals``: field name -> total
    (a field missing from it counts 0)."""
    return {field.key: totals.get(field.name, 0) for field in DECLARED if field.key is not None}


def snapshot(server):
    """The figures of ``server`` now (see BaseServer.stats)."""
    registry = server._connection_registry
    counters = registry.counters
    totals = {field.name: getattr(counters, field.name) for field in DECLARED}
    # The byte totals with the bytes of the connections still open (in their meters).
    totals["bytes_received_closed"], totals["bytes_sent_closed"] = registry.byte_totals()
    model = server._model
    figures = {
        "server": type(server).__name__,
        "model": model.name,
        "engine": server._engine_name,
        "uptime_seconds": monotonic() - server._started_at,
        "connections_active": len(registry),
    }
    figures.update(counter_figures(totals))
    figures.update(model.stats())
    tls = state_of(server).tls
    if tls is not None or getattr(server, "ssl_context", None) is not None:
        figures.update(tls_figures(tls))
    return figures


def tls_figures(tally):
    """The TLS handshakes' figures from ``tally`` (core.tls.TlsFigures, None before the
    first): the totals, and the maps by negotiated version and by cause of failure."""
    if tally is None:
        versions, failures = {}, {}
    else:
        with tally.lock:
            versions, failures = dict(tally.versions), dict(tally.failures)
    return {
        "tls_handshakes_total": sum(versions.values()),
        "tls_handshake_failures_total": sum(failures.values()),
        "tls_versions": versions,
        "tls_handshake_failures": failures,
    }
