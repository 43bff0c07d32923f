"""Command line: ``python -m cysocketserver echo --port 9999``, ``python -m cysocketserver bench``.

``echo`` runs as a service (``service.run``): SIGTERM or SIGINT drains and exits 0, a second
SIGINT exits at once; a mistake (a port in use, a bad port, an unknown host) is one line on
stderr and exit status 2.  It serves on the sockets a service manager passed (``LISTEN_FDS``)
when there are any.  The package's own classes are never changed: the command subclasses them.
"""
import argparse
import errno
import logging
import os
import socket
import stat
import sys
import threading

import cysocketserver
from cysocketserver import service
from cysocketserver.activation import listen_fds

PROG = "python -m cysocketserver"
EXIT_USAGE = 2
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_WORKER_TIMEOUT = 30.0
# serve_forever()'s, with --workers: how often each worker's heartbeat comes.
POLL_INTERVAL = 0.5

log = logging.getLogger("cysocketserver")


class LineEcho(cysocketserver.StreamRequestHandler):
    """Sends every line back as it arrives."""

    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class DatagramEcho(cysocketserver.DatagramRequestHandler):
    """Sends every packet back to its sender."""

    def handle(self):
        self.wfile.write(self.rfile.read())


class UsageError(Exception):
    """A mistake on the command line or in its environment: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (and exit status 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


# -- option values ------------------------------------------------------------------------------

def _port(text):
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("port must be a number from 0 to 65535, not %r" % text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be a number from 0 to 65535, not %d" % port)
    return port


def _whole(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a whole number, not %r" % text)
        if value < minimum:
            raise argparse.ArgumentTypeError("must be at least %d, not %d" % (minimum, value))
        return value
    return parse


_positive_int = _whole(1)
_non_negative_int = _whole(0)


def _seconds(zero_ok):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected seconds, not %r" % text)
        if not (value > 0 or (zero_ok and value == 0)) or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError("must be a number of seconds %s 0, not %r"
                                             % (">=" if zero_ok else ">", text))
        return value
    return parse


def _host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, not %r" % text)
    return host.strip("[]"), _port(port)


# -- building the servers -----------------------------------------------------------------------

# (transport, model) -> the package's class to subclass.
_BASES = {
    ("tcp", "threading"): "ThreadingTCPServer",
    ("tcp", "pool"): "ThreadPoolTCPServer",
    ("tcp", "greenlet"): "GreenletTCPServer",
    ("tcp", "sync"): "TCPServer",
    ("udp", "threading"): "ThreadingUDPServer",
    ("udp", "pool"): "ThreadPoolUDPServer",
    ("udp", "greenlet"): "GreenletUDPServer",
    ("udp", "sync"): "UDPServer",
    ("unix", "threading"): "ThreadingUnixStreamServer",
    ("unix", "pool"): "ThreadPoolUnixStreamServer",
    ("unix", "greenlet"): "GreenletUnixStreamServer",
    ("unix", "sync"): "UnixStreamServer",
    ("unix-udp", "threading"): "ThreadingUnixDatagramServer",
    ("unix-udp", "pool"): "ThreadPoolUnixDatagramServer",
    ("unix-udp", "greenlet"): "GreenletUnixDatagramServer",
    ("unix-udp", "sync"): "UnixDatagramServer",
}


class _DualStack:
    """Binds '::' for IPv4 clients too, where the system allows it."""

    def server_bind(self):
        if self.address_family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        super().server_bind()


class _LoggedErrors:
    """A handler's exception is logged (with its traceback at debug level), not printed."""

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        log.warning("handler failed for %s: %s: %s", client_address, type(error).__name__, error,
                    exc_info=log.isEnabledFor(logging.DEBUG))


def _model(args):
    if args.server is not None:
        return args.server
    if args.no_threads:
        return "sync"
    # A datagram echo is fastest in the serving thread; a stream echo needs concurrency.
    return "sync" if args.udp else "threading"


def _server_class(transport, args, family=None):
    try:
        base = getattr(cysocketserver, _BASES[(transport, _model(args))])
    except AttributeError:
        raise UsageError("--server %s is not available here (the greenlet servers need the "
                         "greenlet package)" % _model(args)) from None
    attrs = {
        "allow_reuse_address": transport == "tcp" or transport == "udp",
        "daemon_threads": True,
        "request_queue_size": args.backlog,
    }
    if not transport.endswith("udp"):
        attrs.update(max_connections=args.max_connections,
                     max_connections_per_client=args.max_connections_per_client,
                     idle_timeout=args.idle_timeout, drain_timeout=args.drain_timeout)
    if args.max_threads is not None:
        attrs["max_threads"] = args.max_threads
    if family is not None:
        attrs["address_family"] = family
    attrs["package_class"] = base.__name__
    mixins = (_LoggedErrors, _DualStack) if family == socket.AF_INET6 else (_LoggedErrors,)
    if args.workers is not None:
        from cysocketserver.prefork import PreforkMixIn

        attrs.update(workers=args.workers, balancing=args.balancing,
                     worker_timeout=args.worker_timeout, max_requests=args.max_requests,
                     max_requests_jitter=args.max_requests_jitter)
        mixins = (PreforkMixIn,) + mixins
    return type("Echo" + base.__name__, mixins + (base,), attrs)


def _handler(transport):
    return DatagramEcho if transport.endswith("udp") else LineEcho


def _check_guards(args):
    if args.workers is None:
        used = [flag for flag, value in (
            ("--balancing", args.balancing != "shared"),
            ("--max-requests", args.max_requests is not None),
            ("--worker-timeout", args.worker_timeout != DEFAULT_WORKER_TIMEOUT))
            if value]
        if used:
            raise UsageError("%s: only with --workers" % ", ".join(used))
    elif args.udp and args.max_requests is not None:
        raise UsageError("--max-requests counts connections: not with --udp")
    if args.udp:
        used = [flag for flag, value in (
            ("--max-connections", args.max_connections),
            ("--max-connections-per-client", args.max_connections_per_client),
            ("--idle-timeout", args.idle_timeout)) if value is not None]
        if used:
            raise UsageError("%s: only for stream servers, not with --udp" % ", ".join(used))


def _check_prefork(servers):
    """With --workers: the prefork settings as serve_forever() will check them, now."""
    for server, _transport in servers:
        if getattr(server, "worker_index", False) is None:
            from cysocketserver.prefork import mixin

            try:
                mixin.settings(server, POLL_INTERVAL)
            except (TypeError, ValueError) as exc:
                raise UsageError(str(exc).replace("Echo", "", 1)) from None


def _resolve(host, port, kind):
    try:
        infos = socket.getaddrinfo(host, port, 0, kind, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError("unknown host %r: %s" % (host, exc.strerror)) from None
    except UnicodeError:
        raise UsageError("invalid host name %r" % host) from None
    family, _kind, _proto, _name, address = infos[0]
    return family, address


def _bind_error(where, exc):
    reasons = {
        errno.EADDRINUSE: "address in use",
        errno.EACCES: "permission denied",
        errno.EADDRNOTAVAIL: "address not available on this machine",
    }
    return UsageError("cannot serve on %s: %s" % (where, reasons.get(exc.errno, exc.strerror or exc)))


def _remove_stale_unix_socket(path):
    """A socket file left by a server that is gone (nobody accepts on it) is removed."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UsageError("cannot serve on %s: the path exists and is not a socket" % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    else:
        raise UsageError("cannot serve on %s: another server is listening there" % path)
    finally:
        probe.close()


def _display(address):
    if isinstance(address, tuple):
        host, port = address[:2]
        return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    return str(address)


def build_servers(args):
    """The echo servers the arguments (and LISTEN_FDS) ask for; UsageError for a mistake."""
    _check_guards(args)
    inherited = listen_fds()
    servers = []
    try:
        if len(inherited) > 1 and args.workers is not None:
            raise UsageError("--workers serves one socket; %d were passed (LISTEN_FDS)"
                             % len(inherited))
        if inherited:
            for sock in inherited:
                transport = {
                    (socket.AF_UNIX, socket.SOCK_STREAM): "unix",
                    (socket.AF_UNIX, socket.SOCK_DGRAM): "unix-udp",
                }.get((sock.family, sock.type),
                      "udp" if sock.type == socket.SOCK_DGRAM else "tcp")
                if transport == "unix-udp" and not hasattr(socket, "AF_UNIX"):
                    raise UsageError("cannot serve the inherited socket %d" % sock.fileno())
                cls = _server_class(transport, args, sock.family)
                servers.append((cls.from_socket(sock, _handler(transport)), transport))
            _check_prefork(servers)
            return servers
        if args.unix:
            if not hasattr(socket, "AF_UNIX"):
                raise UsageError("--unix: this system has no Unix sockets")
            transport = "unix-udp" if args.udp else "unix"
            if not args.udp:
                _remove_stale_unix_socket(args.unix)
            cls = _server_class(transport, args)
            where = args.unix
            address = args.unix
        else:
            transport = "udp" if args.udp else "tcp"
            kind = socket.SOCK_DGRAM if args.udp else socket.SOCK_STREAM
            family, address = _resolve(args.host, args.port, kind)
            cls = _server_class(transport, args, family)
            where = _display((args.host, args.port))
        try:
            servers.append((cls(address, _handler(transport)), transport))
        except OverflowError as exc:
            raise UsageError("cannot serve on %s: %s" % (where, exc)) from None
        except OSError as exc:
            raise _bind_error(where, exc) from None
        _check_prefork(servers)
        return servers
    except BaseException:
        for server, _transport in servers:
            server.server_close()
        _remove_socket_files(servers, args)
        raise


def _remove_socket_files(servers, args):
    """The socket file of a Unix server we bound (not one passed to us) goes with it."""
    for server, transport in servers:
        if transport.startswith("unix") and args.unix and server.server_address == args.unix:
            try:
                os.unlink(args.unix)
            except OSError:
                pass


def _metrics_server(args, servers):
    from cysocketserver.metrics import MetricsServer, prometheus_text

    host, port = args.metrics
    family, address = _resolve(host, port, socket.SOCK_STREAM)
    # With workers, an upgrade's new program binds the same port while this one still serves.
    cls = type("Metrics", (MetricsServer,), {"address_family": family,
                                              "allow_reuse_port": args.workers is not None})
    named = {}
    for server, transport in servers:
        named["echo-%s" % transport if len(servers) > 1 else "echo"] = server
    try:
        return cls(address, lambda: prometheus_text(named))
    except OSError as exc:
        raise _bind_error("%s (metrics)" % _display((host, port)), exc) from None


def run_echo(args):
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        servers = build_servers(args)
        metrics = [_metrics_server(args, servers)] if args.metrics else []
    except UsageError as exc:
        sys.stderr.write("%s echo: error: %s\n" % (PROG, exc))
        built = locals().get("servers", ())
        for server, _transport in built:
            server.server_close()
        _remove_socket_files(built, args)
        return EXIT_USAGE

    def ready():
        for server, transport in servers:
            workers = ("" if args.workers is None else
                       ", %d workers (%s)" % (args.workers, args.balancing))
            print("echo (%s, %s, %s engine%s) on %s; Ctrl-C or SIGTERM stops"
                  % (transport, type(server).package_class, cysocketserver.IMPLEMENTATION,
                     workers, _display(server.server_address)), flush=True)
        for endpoint in metrics:
            print("metrics on http://%s/metrics" % _display(endpoint.server_address), flush=True)

    try:
        if args.workers is not None:
            return _run_prefork(servers[0][0], metrics, ready)
        return service.run([server for server, _transport in servers], extra=metrics,
                           ready=ready)
    finally:
        _remove_socket_files(servers, args)


def _run_prefork(server, metrics, ready):
    """Serve with worker processes: the supervisor runs in this (the main) thread, where it
    takes SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN and SIGTTOU itself."""
    for endpoint in metrics:
        threading.Thread(target=endpoint.serve_forever, daemon=True, name="metrics").start()
    ready()
    try:
        server.serve_forever(POLL_INTERVAL)
        status = 0
    except KeyboardInterrupt:
        status = service.EXIT_INTERRUPTED
    finally:
        for endpoint in metrics:
            endpoint.shutdown()
            endpoint.server_close()
        server.server_close()
    figures = server.stats()
    if status == 0:
        log.info("stopped: %d connection(s) served by %d worker(s), %d restart(s)",
                 figures["connections_total"], len(figures["per_worker"]),
                 figures["worker_restarts_total"])
    return status


def build_parser():
    parser = Parser(prog=PROG, description="cysocketserver's command line.")
    parser.add_argument("--version", action="version",
                        version="cysocketserver %s (%s engine)" % (cysocketserver.__version__,
                                                                   cysocketserver.IMPLEMENTATION))
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    echo = commands.add_parser(
        "echo", help="run an echo server: every line a client sends comes back",
        description="Run an echo server: over TCP (or a Unix socket) every line a client sends "
                    "comes back; with --udp every datagram. SIGTERM or SIGINT stops accepting, "
                    "lets open connections finish for up to --drain-timeout seconds, closes the "
                    "rest and exits 0; a second SIGINT exits at once. Sockets passed by a "
                    "service manager (LISTEN_FDS) are served instead of --host/--port/--unix.")
    where = echo.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1",
                       help="address or name to listen on; '::' listens on IPv6 and IPv4 "
                            "(default: %(default)s)")
    where.add_argument("--port", type=_port, default=9999,
                       help="TCP or UDP port; 0 picks a free one (default: %(default)s)")
    where.add_argument("--unix", metavar="PATH",
                       help="listen on this Unix socket instead of --host/--port "
                            "(default: off)")
    where.add_argument("--udp", action="store_true",
                       help="echo datagrams instead of lines (default: off)")
    how = echo.add_argument_group("how")
    how.add_argument("--server", choices=["threading", "pool", "greenlet", "sync"],
                     help="concurrency model: a thread per connection, a bounded thread pool, "
                          "a greenlet per connection, or one client at a time "
                          "(default: threading; sync with --udp)")
    how.add_argument("--no-threads", action="store_true",
                     help="the same as --server sync (kept for older scripts)")
    how.add_argument("--max-threads", type=_positive_int,
                     help="threads of --server pool (default: %d)"
                          % cysocketserver.ThreadPoolMixIn.max_threads)
    how.add_argument("--backlog", type=_positive_int, default=128,
                     help="the listen backlog, request_queue_size (default: %(default)s)")
    cores = echo.add_argument_group(
        "many cores", "Serve with worker processes under a supervising parent. Signals to "
        "the parent: SIGTERM drains and exits 0; SIGINT or SIGQUIT exit at once; SIGHUP "
        "replaces every worker without refusing a connection; SIGTTIN/SIGTTOU add/remove a "
        "worker.")
    cores.add_argument("--workers", type=_positive_int, metavar="N",
                       help="worker processes, each running --server's model "
                            "(default: off, one process)")
    cores.add_argument("--balancing", choices=["shared", "reuseport"], default="shared",
                       help="shared: one listener, an idle worker is woken per connection; "
                            "reuseport: a listener per worker, the kernel spreads connections "
                            "(default: %(default)s)")
    cores.add_argument("--worker-timeout", type=_seconds(False), metavar="SECONDS",
                       default=DEFAULT_WORKER_TIMEOUT,
                       help="kill and replace a worker whose serve loop has not come round "
                            "for this long (default: %(default)s)")
    cores.add_argument("--max-requests", type=_positive_int, metavar="N",
                       help="replace a worker after N connections (default: never)")
    cores.add_argument("--max-requests-jitter", type=_non_negative_int, metavar="N", default=0,
                       help="add a random 0..N to each worker's --max-requests, so that they "
                            "are not all replaced at once (default: %(default)s)")
    guards = echo.add_argument_group("guards (stream servers)")
    guards.add_argument("--max-connections", type=_positive_int,
                        help="stop accepting at this many open connections (default: no limit)")
    guards.add_argument("--max-connections-per-client", type=_positive_int, metavar="N",
                        help="close at once a client host's connections beyond N "
                             "(default: no limit)")
    guards.add_argument("--idle-timeout", type=_seconds(False), metavar="SECONDS",
                        help="close a connection that has sent nothing for this long "
                             "(default: never)")
    guards.add_argument("--drain-timeout", type=_seconds(True), metavar="SECONDS",
                        default=DEFAULT_DRAIN_TIMEOUT,
                        help="on SIGTERM/SIGINT, how long open connections may finish before "
                             "they are closed (default: %(default)s)")
    ops = echo.add_argument_group("operations")
    ops.add_argument("--metrics", type=_host_port, metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)")
    ops.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"],
                     help="what to log on stderr (default: %(default)s)")
    echo.set_defaults(run=run_echo)
    # Listed for --help; its options are the bench subpackage's own, read by it alone.
    commands.add_parser("bench", help="compare with the stdlib's socketserver "
                        "(python -m cysocketserver bench --help)", add_help=False)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Only the bench command imports the benchmark (and its load client).
        from cysocketserver.bench import main as run_bench

        return run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
