"""A server's statistics as one plain dict (``BaseServer.stats()``), read from its connection
registry, its counters (kept in the engine) and its concurrency model."""
from time import monotonic

__all__ = ["snapshot", "COUNTERS"]

# The running totals, as stats() names them, and where each comes from on the counters.
COUNTERS = (
    ("connections_total", "connections_total"),
    ("connections_rejected_total", "connections_rejected_total"),
    ("handler_errors_total", "handler_errors_total"),
    ("accept_errors_total", "accept_errors_total"),
    ("idle_closed_total", "idle_closed_total"),
    ("drain_finished_total", "drain_finished_total"),
    ("drain_cut_total", "drain_cut_total"),
)


def snapshot(server):
    """The figures of ``server`` now (see BaseServer.stats)."""
    registry = server._connection_registry
    counters = registry.counters
    received, sent = registry.byte_totals()
    model = server._model
    figures = {
        "server": type(server).__name__,
        "model": model.name,
        "engine": server._engine_name,
        "uptime_seconds": monotonic() - server._started_at,
        "connections_active": len(registry),
    }
    for name, attribute in COUNTERS:
        figures[name] = getattr(counters, attribute)
    figures["bytes_received_total"] = received
    figures["bytes_sent_total"] = sent
    figures.update(model.stats())
    return figures
