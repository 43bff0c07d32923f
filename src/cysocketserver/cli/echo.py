"""``echo``: an echo server as a service -- over TCP or a Unix socket every line a client sends
comes back, with --udp every datagram.  The package's own classes are never changed: the
command subclasses them.  It serves on the sockets a service manager passed (``LISTEN_FDS``)
when there are any."""
import socket
import sys

import cysocketserver
from cysocketserver import service
from cysocketserver.activation import listen_fds
from cysocketserver.cli import binding, exporter, options, serving, workers
from cysocketserver.cli.options import EXIT_USAGE, PROG, UsageError


class LineEcho(cysocketserver.StreamRequestHandler):
    """Sends every line back as it arrives."""

    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class DatagramEcho(cysocketserver.DatagramRequestHandler):
    """Sends every packet back to its sender."""

    def handle(self):
        self.wfile.write(self.rfile.read())


# -- the options ----------------------------------------------------------------------------------

def add_command(commands):
    """The echo subcommand's parser, added to ``commands``."""
    echo = commands.add_parser(
        "echo", help="run an echo server: every line a client sends comes back",
        description="Run an echo server: over TCP (or a Unix socket) every line a client sends "
                    "comes back; with --udp every datagram. Signals: SIGTERM stops accepting, "
                    "logs how many connections drain and for how long, lets them finish for "
                    "up to --drain-timeout seconds, cuts the rest and exits 0; SIGINT (Ctrl-C) "
                    "stops at once, cutting open connections, and exits 130; SIGQUIT the same, "
                    "exit 131. Sockets passed by a service manager (LISTEN_FDS) are served "
                    "instead of --host/--port/--unix.")
    where = echo.add_argument_group("where")
    where.add_argument("--host", type=options.host, default="127.0.0.1",
                       help="address or name to listen on; '::' listens on IPv6 and IPv4, "
                            "'' on every IPv4 interface (default: %(default)s)")
    where.add_argument("--port", type=options.port, default=9999,
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
    how.add_argument("--max-threads", type=options.positive,
                     help="threads of --server pool (default: %d)"
                          % cysocketserver.ThreadPoolMixIn.max_threads)
    how.add_argument("--backlog", type=options.positive, default=128,
                     help="the listen backlog, request_queue_size (default: %(default)s)")
    workers.add_options(echo)
    tls = echo.add_argument_group("TLS (stream servers)")
    tls.add_argument("--tls-cert", metavar="FILE",
                     help="serve TLS with this PEM certificate chain; each connection's "
                          "handshake runs off the serving loop (default: off)")
    tls.add_argument("--tls-key", metavar="FILE",
                     help="the PEM private key of --tls-cert (default: in the --tls-cert file)")
    guards = serving.add_guards(echo, "guards (stream servers)")
    guards.add_argument("--idle-timeout", type=options.seconds(False), metavar="SECONDS",
                        help="close a connection that has sent nothing for this long "
                             "(default: never)")
    serving.add_operations(echo)
    echo.set_defaults(run=run)
    return echo


def _check_options(args):
    workers.check_options(args)
    if args.udp:
        used = [flag for flag, value in (
            ("--max-connections", args.max_connections),
            ("--max-connections-per-client", args.max_connections_per_client),
            ("--idle-timeout", args.idle_timeout)) if value is not None]
        if used:
            raise UsageError("%s: only for stream servers, not with --udp" % ", ".join(used))
    args.ssl_context = _tls_context(args)


def _tls_context(args):
    """The server-side SSLContext --tls-cert and --tls-key ask for, or None."""
    if args.tls_cert is None:
        if args.tls_key is not None:
            raise UsageError("--tls-key: only with --tls-cert")
        return None
    if args.udp:
        raise UsageError("--tls-cert: only for stream servers, not with --udp")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except OSError as exc:
        raise UsageError("cannot read the TLS certificate or key: %s: %s"
                         % (exc.filename or args.tls_cert, exc.strerror or exc)) from None
    except ssl.SSLError as exc:
        raise UsageError("the TLS certificate %s or key %s is not usable: %s"
                         % (args.tls_cert, args.tls_key or args.tls_cert,
                            exc.reason or exc)) from None
    return context


# -- the server classes ---------------------------------------------------------------------------

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


def _model(args):
    if args.server is not None:
        return args.server
    # A datagram echo is fastest in the serving thread; a stream echo needs concurrency.
    return "sync" if args.udp else "threading"


def _server_class(transport, args, family=None):
    try:
        base = getattr(cysocketserver, _BASES[(transport, _model(args))])
    except AttributeError:
        raise UsageError("--server %s is not available here (the greenlet servers need the "
                         "greenlet package)" % _model(args)) from None
    attrs = {
        "allow_reuse_address": transport in ("tcp", "udp"),
        "daemon_threads": True,
        "request_queue_size": args.backlog,
        "package_class": base.__name__,
    }
    if not transport.endswith("udp"):
        attrs.update(max_connections=args.max_connections,
                     max_connections_per_client=args.max_connections_per_client,
                     idle_timeout=args.idle_timeout, drain_timeout=args.drain_timeout,
                     ssl_context=getattr(args, "ssl_context", None))
    if args.max_threads is not None:
        attrs["max_threads"] = args.max_threads
    if family is not None:
        attrs["address_family"] = family
    mixins = serving.mixins(family)
    prefork, prefork_attrs = workers.mixin(args)
    if prefork is not None:
        attrs.update(prefork_attrs)
        mixins = (prefork,) + mixins
    return type("Echo" + base.__name__, mixins + (base,), attrs)


def _handler(transport):
    return DatagramEcho if transport.endswith("udp") else LineEcho


def _inherited_transport(sock):
    if getattr(socket, "AF_UNIX", None) == sock.family:
        return "unix-udp" if sock.type == socket.SOCK_DGRAM else "unix"
    return "udp" if sock.type == socket.SOCK_DGRAM else "tcp"


# -- binding --------------------------------------------------------------------------------------

def build_servers(args):
    """The echo servers the arguments (and LISTEN_FDS) ask for, as (server, transport) pairs;
    UsageError for a mistake."""
    _check_options(args)
    inherited = listen_fds()
    servers = []
    try:
        if len(inherited) > 1 and args.workers is not None:
            raise UsageError("--workers serves one socket; %d were passed (LISTEN_FDS)"
                             % len(inherited))
        for sock in inherited:
            transport = _inherited_transport(sock)
            cls = _server_class(transport, args, sock.family)
            servers.append((cls.from_socket(sock, _handler(transport)), transport))
        if not inherited:
            servers.append(_bind(args))
        if args.workers is not None:
            workers.check_server(servers[0][0])
        return servers
    except BaseException:
        _close(servers, args)
        raise


def _bind(args):
    if args.unix:
        if not hasattr(socket, "AF_UNIX"):
            raise UsageError("--unix: this system has no Unix sockets")
        transport = "unix-udp" if args.udp else "unix"
        if not args.udp:
            binding.remove_stale_unix_socket(args.unix)
        cls = _server_class(transport, args)
        where = address = args.unix
    else:
        transport = "udp" if args.udp else "tcp"
        kind = socket.SOCK_DGRAM if args.udp else socket.SOCK_STREAM
        family, address = binding.resolve(args.host, args.port, kind)
        cls = _server_class(transport, args, family)
        where = binding.display((args.host, args.port))
    try:
        return cls(address, _handler(transport)), transport
    except OverflowError as exc:
        raise UsageError("cannot serve on %s: %s" % (where, exc)) from None
    except OSError as exc:
        raise binding.bind_error(where, exc) from None


def _close(servers, args):
    for server, _transport in servers:
        server.server_close()
        binding.remove_socket_file(server, args.unix)


def _metrics(args, servers):
    if args.metrics is None:
        return []
    if len(servers) > 1:
        named = {"echo-%s" % transport: server for server, transport in servers}
    else:
        named = {"echo": servers[0][0]}
    return [exporter.metrics_server(args.metrics, named, shared_port=args.workers is not None)]


# -- running --------------------------------------------------------------------------------------

def _signals(args, transport):
    """What each signal does, for the startup line."""
    if transport.endswith("udp"):
        term = "SIGTERM: stop, exit 0"
    else:
        term = "SIGTERM: drain up to %g s, exit 0" % args.drain_timeout
    told = "%s; SIGINT (Ctrl-C): stop at once, exit %d; SIGQUIT: the same, exit %d" % (
        term, service.EXIT_INTERRUPTED, service.EXIT_QUIT)
    if args.workers is not None:
        told += "; SIGHUP: replace the workers"
    return told


def run(args):
    """Serve until a signal; the exit status."""
    serving.setup_logging(args.log_level)
    servers = []
    try:
        servers = build_servers(args)
        metrics = _metrics(args, servers)
    except UsageError as exc:
        sys.stderr.write("%s echo: error: %s\n" % (PROG, exc))
        _close(servers, args)
        return EXIT_USAGE

    def ready():
        for server, transport in servers:
            with_workers = ("" if args.workers is None else
                            ", %d workers (%s)" % (args.workers, args.balancing))
            print("echo (%s%s, %s, %s engine%s) on %s; %s"
                  % (transport, "+tls" if getattr(server, "ssl_context", None) else "",
                     type(server).package_class, cysocketserver.IMPLEMENTATION, with_workers, binding.display(server.server_address),
                     _signals(args, transport)), flush=True)
        for endpoint in metrics:
            print("metrics on http://%s/metrics" % binding.display(endpoint.server_address),
                  flush=True)

    try:
        if args.workers is not None:
            return workers.serve(servers[0][0], metrics, ready)
        return service.run([server for server, _transport in servers], extra=metrics,
                           ready=ready)
    finally:
        for server, _transport in servers:
            binding.remove_socket_file(server, args.unix)
