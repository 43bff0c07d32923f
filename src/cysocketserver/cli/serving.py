"""What the serving commands share: the guard and operations options, the log set-up, and the
mix-ins every command's server classes get (IPv6 dual stack, handler errors logged)."""
import logging
import socket
import sys

from cysocketserver.cli import options

DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_LOG_LEVEL = "info"

log = logging.getLogger("cysocketserver")


def add_guards(parser, title, defaults=True):
    """--max-connections, --max-connections-per-client and --drain-timeout, in a group of
    ``parser``; ``defaults=False`` leaves them None when not given (a config file may set
    them), the help still naming the default.  Returns the group."""
    guards = parser.add_argument_group(title)
    guards.add_argument("--max-connections", type=options.positive,
                        help="stop accepting at this many open connections (default: no limit)")
    guards.add_argument("--max-connections-per-client", type=options.positive, metavar="N",
                        help="close at once a client host's connections beyond N "
                             "(default: no limit)")
    guards.add_argument("--drain-timeout", type=options.seconds(True), metavar="SECONDS",
                        default=DEFAULT_DRAIN_TIMEOUT if defaults else None,
                        help="on SIGTERM, how long open connections may finish before they "
                             "are cut; 0 cuts them at once (default: %s)" % DEFAULT_DRAIN_TIMEOUT)
    return guards


def add_operations(parser, defaults=True):
    """--metrics and --log-level, in a group of ``parser`` (``defaults`` as add_guards)."""
    ops = parser.add_argument_group("operations")
    ops.add_argument("--metrics", type=options.host_port, metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics, and "
                          "/healthz and /readyz for orchestrators; :PORT listens on every "
                          "interface (0.0.0.0) (default: off)")
    ops.add_argument("--log-level", default=DEFAULT_LOG_LEVEL if defaults else None,
                     choices=["debug", "info", "warning", "error"],
                     help="what to log on stderr (default: %s)" % DEFAULT_LOG_LEVEL)
    return ops


def setup_logging(level):
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class DualStack:
    """Binds '::' for IPv4 clients too, where the system allows it."""

    def server_bind(self):
        if self.address_family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        super().server_bind()


class LoggedErrors:
    """A handler's exception is logged (with its traceback at debug level), not printed."""

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        log.warning("handler failed for %s: %s: %s", client_address, type(error).__name__, error,
                    exc_info=log.isEnabledFor(logging.DEBUG))


def mixins(family):
    """The mix-ins of a command's server class for an address ``family``."""
    return (LoggedErrors, DualStack) if family == socket.AF_INET6 else (LoggedErrors,)
