"""``--metrics HOST:PORT``: the Prometheus endpoint beside the servers a command runs."""
import socket

from cysocketserver.cli import binding


def metrics_server(where, servers, shared_port, more=None, ready=None):
    """A MetricsServer bound to ``where`` (host, port) serving the figures of ``servers`` (a
    {name: server} dict), then ``more()``'s text if given; /readyz answers ``ready()`` (default:
    ready while it serves); ``shared_port``: another process may bind the same port (a prefork
    upgrade's new program, while this one still serves).  UsageError if it cannot bind."""
    from cysocketserver.metrics import MetricsServer, prometheus_text

    host, port = where
    family, address = binding.resolve(host, port, socket.SOCK_STREAM)
    cls = type("Metrics", (MetricsServer,), {"address_family": family,
                                              "allow_reuse_port": shared_port})
    try:
        if more is None:
            return cls(address, lambda: prometheus_text(servers), ready=ready)
        return cls(address, lambda: prometheus_text(servers) + more(), ready=ready)
    except OSError as exc:
        raise binding.bind_error("%s (metrics)" % binding.display(where), exc) from None
