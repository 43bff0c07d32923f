"""``echo --workers``: serving under the prefork supervisor -- its options, the settings checked
before serving, the signals that manage the workers, and the last line."""
import signal

from cysocketserver import service
from cysocketserver.cli import options
from cysocketserver.cli.options import UsageError

DEFAULT_WORKER_TIMEOUT = 30.0
# serve_forever()'s default, which the service calls: how often each worker's heartbeat comes.
POLL_INTERVAL = 0.5
# Signals that manage the workers, and the server's method each calls.
_ACTIONS = (("SIGHUP", "reload"), ("SIGTTIN", "add_worker"), ("SIGTTOU", "remove_worker"),
            ("SIGUSR2", "upgrade"))


def add_options(parser):
    cores = parser.add_argument_group(
        "many cores", "Serve with worker processes under a supervising parent. Signals to the "
        "parent, besides SIGTERM, SIGINT and SIGQUIT: SIGHUP replaces every worker without "
        "refusing a connection; SIGTTIN/SIGTTOU add/remove a worker; SIGUSR2 hands the "
        "listener over to a new copy of the program.")
    cores.add_argument("--workers", type=options.positive, metavar="N",
                       help="worker processes, each running --server's model "
                            "(default: off, one process)")
    cores.add_argument("--balancing", choices=["shared", "reuseport"], default="shared",
                       help="shared: one listener, an idle worker is woken per connection; "
                            "reuseport: a listener per worker, the kernel spreads connections "
                            "(default: %(default)s)")
    cores.add_argument("--worker-timeout", type=options.seconds(False), metavar="SECONDS",
                       default=DEFAULT_WORKER_TIMEOUT,
                       help="kill and replace a worker whose serve loop has not come round "
                            "for this long (default: %(default)s)")
    cores.add_argument("--max-requests", type=options.positive, metavar="N",
                       help="replace a worker after N connections (default: never)")
    cores.add_argument("--max-requests-jitter", type=options.non_negative, metavar="N",
                       default=0,
                       help="add a random 0..N to each worker's --max-requests, so that they "
                            "are not all replaced at once (default: %(default)s)")


def check_options(args):
    """The worker options make sense together (UsageError if not)."""
    if args.workers is None:
        used = [flag for flag, value in (
            ("--balancing", args.balancing != "shared"),
            ("--max-requests", args.max_requests is not None),
            ("--worker-timeout", args.worker_timeout != DEFAULT_WORKER_TIMEOUT))
            if value]
        if used:
            raise UsageError("%s: only with --workers" % ", ".join(used))
    elif getattr(args, "udp", False) and args.max_requests is not None:
        raise UsageError("--max-requests counts connections: not with --udp")


def mixin(args):
    """(the prefork mix-in, its class attributes) for an echo class, or (None, {})."""
    if args.workers is None:
        return None, {}
    from cysocketserver.prefork import PreforkMixIn

    return PreforkMixIn, {
        "workers": args.workers, "balancing": args.balancing,
        "worker_timeout": args.worker_timeout, "max_requests": args.max_requests,
        "max_requests_jitter": args.max_requests_jitter,
    }


def check_server(server):
    """The prefork settings as serve_forever() will check them, now (UsageError if bad)."""
    from cysocketserver.prefork import mixin as prefork_mixin

    try:
        prefork_mixin.settings(server, POLL_INTERVAL)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc).replace("Echo", "", 1)) from None


def serve(server, metrics, ready, reload=None):
    """Supervise the workers until a signal (see ``service.run``); the exit status.
    ``reload``: what SIGHUP calls instead of the server's reload() (a command that reads its
    settings anew first)."""
    actions = {getattr(signal, name): getattr(server, method)
               for name, method in _ACTIONS if hasattr(signal, name)}
    if reload is not None:
        actions[signal.SIGHUP] = reload
    # The parent's server_close() stops the workers at once (SIGQUIT, then SIGKILL).
    return service.run([server], extra=metrics, ready=ready, actions=actions,
                       stop_at_once=lambda parent: parent.server_close(), summary=summary)


def summary(servers, live):
    """The last line's end: connections (for a stream server), workers and restarts."""
    (server,) = servers
    figures = server.stats()
    workers = "%d worker(s), %d restart(s)" % (len(figures["per_worker"]),
                                               figures["worker_restarts_total"])
    drain = service.drained(servers, live)
    if not drain:    # a datagram server: no connections, and its datagrams are not counted
        return workers
    return "%d connection(s) served by %s; %s" % (figures["connections_total"], workers, drain)
