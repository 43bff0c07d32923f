"""Servers' statistics in the Prometheus text exposition format: ``prometheus_text()``.

The names follow Prometheus' conventions: a ``cysocketserver_`` prefix, base units (seconds,
bytes), ``_total`` on counters, and each series labelled with the server it belongs to.  The
HTTP endpoint that serves them is ``metrics.MetricsServer``.
"""
from ._counterfields import DECLARED
from ._version import __version__

__all__ = ["prometheus_text", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# stats() key -> (metric name, type, help, extra labels); the counters' series are declared with
# the counters (_counterfields).
_SERIES = (
    ("connections_active", "cysocketserver_connections_active", "gauge",
     "Connections open now.", None),
) + tuple(
    (field.key, field.metric, "counter", field.help, field.label)
    for field in DECLARED if field.key is not None
) + (
    ("uptime_seconds", "cysocketserver_uptime_seconds", "gauge",
     "Seconds since the server was built.", None),
    ("threads_running", "cysocketserver_threads_running", "gauge",
     "Request threads running (ThreadingMixIn).", None),
    ("pool_threads_busy", "cysocketserver_pool_threads", "gauge",
     "Pooled threads, by state (ThreadPoolMixIn).", ("state", "busy")),
    ("pool_threads_idle", "cysocketserver_pool_threads", "gauge", None, ("state", "idle")),
    ("pool_threads_max", "cysocketserver_pool_threads_max", "gauge",
     "The pool's max_threads (ThreadPoolMixIn).", None),
    ("greenlets_running", "cysocketserver_greenlets_running", "gauge",
     "Handler greenlets running (GreenletMixIn).", None),
    ("children_active", "cysocketserver_children_active", "gauge",
     "Child processes alive (ForkingMixIn).", None),
    ("workers", "cysocketserver_workers", "gauge",
     "Worker processes the parent keeps (PreforkMixIn).", None),
    ("workers_serving", "cysocketserver_workers_serving", "gauge",
     "Worker processes serving now (PreforkMixIn).", None),
    ("worker_restarts_total", "cysocketserver_worker_restarts_total", "counter",
     "Worker processes started to replace another (PreforkMixIn).", None),
    ("worker_crashes_total", "cysocketserver_worker_crashes_total", "counter",
     "Worker processes that died unasked (PreforkMixIn).", None),
    ("worker_timeouts_total", "cysocketserver_worker_timeouts_total", "counter",
     "Worker processes killed for a missed heartbeat (PreforkMixIn).", None),
)

# stats() maps -> one counter whose label tells the map's keys apart (TLS).
_LABELLED_SERIES = (
    ("tls_versions", "cysocketserver_tls_handshakes_total", "counter",
     "TLS handshakes completed, by negotiated protocol version.", "version"),
    ("tls_handshake_failures", "cysocketserver_tls_handshake_failures_total", "counter",
     "TLS handshakes that failed, by cause (timeout, not_tls, closed, certificate, alert, "
     "protocol).", "cause"),
)

# PreforkMixIn's per-worker figures (stats()["per_worker"]), labelled with the worker index.
_WORKER_SERIES = (
    ("requests_total", "cysocketserver_worker_requests_total", "counter",
     "Connections accepted by the workers of each index (across their replacements)."),
    ("connections_active", "cysocketserver_worker_connections_active", "gauge",
     "Connections open now in each worker."),
    ("restarts", "cysocketserver_worker_index_restarts_total", "counter",
     "Times each worker index was given a new process."),
    ("heartbeat_age_seconds", "cysocketserver_worker_heartbeat_age_seconds", "gauge",
     "Seconds since each serving worker's last heartbeat."),
)


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs):
    return "{" + ",".join('%s="%s"' % (name, _escape(value)) for name, value in pairs) + "}"


def _number(value):
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def prometheus_text(servers):
    """The statistics of ``servers`` (one server, or a mapping of names to servers) as
    Prometheus text.  Each series has a ``server`` label: the mapping's key, or the class
    name."""
    if hasattr(servers, "stats"):
        servers = {type(servers).__name__: servers}
    snapshots = [(name, server.stats()) for name, server in servers.items()]
    lines = [
        "# HELP cysocketserver_info The package and how each server runs.",
        "# TYPE cysocketserver_info gauge",
    ]
    for name, stats in snapshots:
        lines.append("cysocketserver_info%s 1" % _labels([
            ("server", name), ("version", __version__), ("engine", stats["engine"]),
            ("model", stats["model"])]))
    described = set()
    for key, metric, kind, help_text, extra in _SERIES:
        present = [(name, stats[key]) for name, stats in snapshots if key in stats]
        if not present:
            continue
        if metric not in described:
            described.add(metric)
            lines.append("# HELP %s %s" % (metric, help_text))
            lines.append("# TYPE %s %s" % (metric, kind))
        for name, value in present:
            pairs = [("server", name)]
            if extra is not None:
                pairs.append(extra)
            lines.append("%s%s %s" % (metric, _labels(pairs), _number(value)))
    for key, metric, kind, help_text, label in _LABELLED_SERIES:
        present = [name for name, stats in snapshots if key in stats]
        if not present:
            continue
        lines.append("# HELP %s %s" % (metric, help_text))
        lines.append("# TYPE %s %s" % (metric, kind))
        for name, stats in snapshots:
            for value_label, value in sorted(stats.get(key, {}).items()):
                lines.append("%s%s %s" % (metric, _labels([("server", name), (label, value_label)]),
                                          _number(value)))
    for key, metric, kind, help_text in _WORKER_SERIES:
        present = [(name, row["index"], row[key]) for name, stats in snapshots
                   for row in stats.get("per_worker", ()) if row.get(key) is not None]
        if not present:
            continue
        lines.append("# HELP %s %s" % (metric, help_text))
        lines.append("# TYPE %s %s" % (metric, kind))
        for name, index, value in present:
            lines.append("%s%s %s" % (metric, _labels([("server", name), ("worker", index)]),
                                      _number(value)))
    return "\n".join(lines) + "\n"
