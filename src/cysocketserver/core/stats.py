"""A server's statistics as one plain dict (``BaseServer.stats()``), read from its connection
registry, its counters (kept in the engine) and its concurrency model."""
from time import monotonic

from .._counterfields import DECLARED

__all__ = ["snapshot", "counter_figures"]


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
    return figures
