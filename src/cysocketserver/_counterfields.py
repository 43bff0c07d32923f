"""A server's counters, declared once: what both engines keep and what the reports call them.

Each engine's ``Counters`` (``_counters``, ``_pure_counters``) keeps one native unsigned 64-bit
cell per field, in this order -- the layout another process reads from a shared buffer, so a
field is only ever added at the end -- and reads it as a read-only attribute named ``name``.
``stats()`` reports it under ``key`` (None: not reported on its own), and
``metrics.prometheus_text()`` as the series ``metric``, with ``label`` (a (name, value) pair)
where two fields are one series told apart by a label, and ``help`` (None: described with the
other field of its series).
"""
__all__ = ["CounterField", "DECLARED", "FIELDS"]


class CounterField:
    """One field: its cell's attribute ``name``, its ``stats()`` ``key``, its Prometheus
    ``metric``, ``label`` and ``help``.  (A plain class: a namedtuple costs a fifth of a
    millisecond at import, for no use here.)"""

    __slots__ = ("name", "key", "metric", "label", "help")

    def __init__(self, name, key, metric, label, help):
        self.name = name
        self.key = key
        self.metric = metric
        self.label = label
        self.help = help

    def __repr__(self):
        return "CounterField(%r)" % (self.name,)

DECLARED = (
    CounterField("connections_total", "connections_total",
                 "cysocketserver_connections_total", None, "Stream connections accepted."),
    # With connections_total, the open count of a process that others read (a prefork
    # worker's); stats() counts the live connections themselves (connections_active).
    CounterField("connections_closed_total", None, None, None, None),
    CounterField("connections_rejected_total", "connections_rejected_total",
                 "cysocketserver_connections_rejected_total", None,
                 "Connections closed at once by max_connections_per_client."),
    CounterField("handler_errors_total", "handler_errors_total",
                 "cysocketserver_handler_errors_total", None,
                 "Exceptions passed to handle_error()."),
    CounterField("accept_errors_total", "accept_errors_total",
                 "cysocketserver_accept_errors_total", None,
                 "Failed accept() or recvfrom() calls."),
    CounterField("idle_closed_total", "idle_closed_total",
                 "cysocketserver_connections_idle_closed_total", None,
                 "Connections closed by idle_timeout."),
    CounterField("drain_finished_total", "drain_finished_total",
                 "cysocketserver_drained_connections_total", ("outcome", "finished"),
                 "Connections open when server_close() began draining, by how they ended."),
    CounterField("drain_cut_total", "drain_cut_total",
                 "cysocketserver_drained_connections_total", ("outcome", "cut"), None),
    # The bytes of connections that have ended; stats() adds those of the live ones (their
    # meters), so its keys say total.
    CounterField("bytes_received_closed", "bytes_received_total",
                 "cysocketserver_received_bytes_total", None,
                 "Bytes received through the handlers' streams."),
    CounterField("bytes_sent_closed", "bytes_sent_total",
                 "cysocketserver_sent_bytes_total", None,
                 "Bytes sent through the handlers' streams."),
)

FIELDS = tuple(field.name for field in DECLARED)
