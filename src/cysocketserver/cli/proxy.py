"""``proxy``: an L4 (TCP) proxy -- each client connection is relayed to one of the upstreams,
picked by the balancer among those up; health checks, retries, PROXY protocol both ways,
per-upstream metrics, a TOML config re-read on SIGHUP.  The reusable parts are the
``cysocketserver.proxy`` package's; this module is the command: its options, the server class,
binding, reloading and running."""
import dataclasses
import logging
import signal
import socket
import sys

import cysocketserver
from cysocketserver import service
from cysocketserver.cli import binding, exporter, options, serving, workers
from cysocketserver.cli.options import EXIT_USAGE, PROG, UsageError
from cysocketserver.proxy import config
from cysocketserver.proxy import tls as proxy_tls
from cysocketserver.proxy.server import ProxyHandler, ProxyMixIn

log = logging.getLogger("cysocketserver")

_BASES = {"greenlet": "GreenletTCPServer", "threading": "ThreadingTCPServer"}
BACKLOG = 1024
EXAMPLE = """\
example:
  %s proxy --listen 127.0.0.1:8000 --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9002""" % PROG


def add_command(commands):
    """The proxy subcommand's parser, added to ``commands``."""
    import argparse

    proxy = commands.add_parser(
        "proxy", help="run a TCP (L4) proxy in front of upstream servers",
        description="Relay each client connection to an upstream, picked among those up. "
                    "Settings come from the command line, else from --config, else from the "
                    "defaults. Signals: SIGHUP re-reads --config (new connections use the new "
                    "upstreams at once, open ones keep theirs; a broken file is logged and the "
                    "old settings stay); SIGTERM stops accepting and drains for up to "
                    "--drain-timeout, exit 0; SIGINT and SIGQUIT stop at once.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = proxy.add_argument_group("where")
    where.add_argument("--listen", metavar="HOST:PORT",
                       help="where clients connect: HOST:PORT, [IPv6]:PORT (required, here "
                            "or in --config)")
    where.add_argument("--upstream", dest="upstreams", action="append", default=[],
                       metavar="HOST:PORT[,weight=N][,max-connections=N][,backup]",
                       help="an upstream server; repeat for each (required, here or in "
                            "--config). backup: used only while no other upstream is up")
    where.add_argument("--config", metavar="FILE",
                       help="a TOML file with these settings (names as the options', "
                            "upstreams = [...]); options given here override it; SIGHUP "
                            "re-reads it (default: none)")
    how = proxy.add_argument_group("balancing and connecting")
    how.add_argument("--balance", choices=config.BALANCES,
                     help="roundrobin (weighted, smooth), leastconn (fewest open connections "
                          "per weight) or source (the client's address, consistently hashed) "
                          "(default: roundrobin)")
    how.add_argument("--connect-timeout", type=options.seconds(False), metavar="SECONDS",
                     help="give up a connect to an upstream after this long (default: %g)"
                          % config.DEFAULTS["connect_timeout"])
    how.add_argument("--retries", type=options.non_negative, metavar="N",
                     help="after a failed connect, try up to N other upstreams (default: %d)"
                          % config.DEFAULTS["retries"])
    how.add_argument("--idle-timeout", type=options.seconds(True), metavar="SECONDS",
                     help="close a connection once both directions have been silent this "
                          "long; 0: never (default: %g)" % config.DEFAULT_IDLE_TIMEOUT)
    how.add_argument("--server", choices=sorted(_BASES), default="greenlet",
                     help="concurrency model: a greenlet per connection, or a thread per "
                          "connection (default: %(default)s)")
    health = proxy.add_argument_group("health checks")
    health.add_argument("--health-check-interval", type=options.seconds(True), metavar="SECONDS",
                        help="check each upstream this often; 0: no checks (default: %g)"
                             % config.DEFAULTS["health_check_interval"])
    health.add_argument("--rise", type=options.positive, metavar="N",
                        help="checks in a row that bring a down upstream up (default: %d)"
                             % config.DEFAULTS["rise"])
    health.add_argument("--fall", type=options.positive, metavar="N",
                        help="failures in a row (checks or connects) that take an upstream "
                             "down (default: %d)" % config.DEFAULTS["fall"])
    health.add_argument("--health-check-send", metavar="STRING",
                        help="send this on the check's connection (escapes such as \\r\\n "
                             "work) (default: a connect is the check)")
    health.add_argument("--health-check-expect", metavar="STRING",
                        help="the check passes once this arrives (default: the connect)")
    proxying = proxy.add_argument_group("PROXY protocol")
    proxying.add_argument("--accept-proxy", choices=config.ACCEPT_PROXY,
                          help="clients come through a proxy that sends a PROXY header of "
                               "this version (default: off)")
    proxying.add_argument("--send-proxy", choices=config.SEND_PROXY,
                          help="send upstreams a PROXY header of this version naming the "
                               "client (default: off)")
    tls = proxy.add_argument_group("TLS")
    tls.add_argument("--tls-cert", metavar="FILE",
                     help="terminate clients' TLS here with this PEM certificate (chain); the "
                          "upstreams get plain bytes (default: no TLS)")
    tls.add_argument("--tls-key", metavar="FILE",
                     help="the PEM private key of --tls-cert (default: in its file)")
    tls.add_argument("--upstream-tls", action="store_const", const=True, default=None,
                     help="speak TLS to the upstreams, verifying their certificates "
                          "(default: plain)")
    tls.add_argument("--upstream-ca", metavar="FILE",
                     help="verify the upstreams' certificates against these PEM CA "
                          "certificates (default: the system's)")
    tls.add_argument("--sni", action="append", default=[], metavar="NAME=HOST:PORT",
                     help="pass TLS through untouched, routed by the server name in the "
                          "ClientHello: NAME goes to HOST:PORT; repeat for each; other names "
                          "(and none) go to --upstream")
    tls.add_argument("--client-hello-timeout", type=options.seconds(False), metavar="SECONDS",
                     help="with --sni, close a client whose ClientHello has not come in this "
                          "long (default: %g)" % config.DEFAULTS["client_hello_timeout"])
    workers.add_options(proxy)
    serving.add_guards(proxy, "guards", defaults=False)
    serving.add_operations(proxy, defaults=False)
    proxy.set_defaults(run=run)
    return proxy


# -- the settings ---------------------------------------------------------------------------------

def _given(args):
    """What the command line says, by setting name (None where it says nothing)."""
    return {name: getattr(args, name, None) for name in config.DEFAULTS}


def load_settings(args):
    """The settings from the command line over --config; ConfigError on a mistake."""
    from_file = config.load_file(args.config) if args.config else None
    return config.resolve(_given(args), from_file, where=args.config or "the command line")


def _reloaded(args, server):
    """SIGHUP: the file read anew; the new upstream settings used from now on.  True if they
    were taken."""
    if not args.config:
        log.warning("SIGHUP: no --config file to re-read; the settings stay")
        return False
    current = server.proxy_state.settings
    try:
        fresh = load_settings(args)
    except config.ConfigError as exc:
        log.error("SIGHUP: %s; the settings in use stay", exc)
        return False
    fixed = [name.replace("_", "-") for name in config.DEFAULTS
             if name not in config.RELOADED and getattr(fresh, name) != getattr(current, name)]
    if fixed:
        log.warning("SIGHUP: %s changed in %s: these take a restart", ", ".join(fixed),
                    args.config)
    server.configure(dataclasses.replace(
        current, **{name: getattr(fresh, name) for name in config.RELOADED}))
    log.info("SIGHUP: %s re-read; new connections go to %s (%s)", args.config,
             ", ".join(spec.name for spec in fresh.upstreams), fresh.balance)
    return True


# -- the server -----------------------------------------------------------------------------------

def _server_class(args, settings, family):
    try:
        base = getattr(cysocketserver, _BASES[args.server])
    except AttributeError:
        raise UsageError("--server greenlet needs the greenlet package") from None
    if args.server != "greenlet" and (settings.tls_cert or settings.upstream_tls):
        # A terminated connection is copied by two tasks on one hub through its SSL object;
        # two threads may not use one SSL object at once.
        raise UsageError("--tls-cert and --upstream-tls need --server greenlet")
    attrs = {
        "allow_reuse_address": True,
        "daemon_threads": True,
        "request_queue_size": BACKLOG,
        "package_class": base.__name__,
        "address_family": family,
        "max_connections": settings.max_connections,
        "max_connections_per_client": settings.max_connections_per_client,
        "drain_timeout": settings.drain_timeout,
        "proxy_protocol": settings.accept_proxy,
        "ssl_context": proxy_tls.server_context(settings),
    }
    mixins = serving.mixins(family) + (ProxyMixIn,)
    prefork, prefork_attrs = workers.mixin(args)
    if prefork is not None:
        attrs.update(prefork_attrs)
        mixins = (prefork,) + mixins
    return type("Proxy" + base.__name__, mixins + (base,), attrs)


def build_server(args, settings):
    """The bound proxy server; UsageError for a mistake."""
    host, port = settings.listen
    family, address = binding.resolve(host, port, socket.SOCK_STREAM)
    try:
        cls = _server_class(args, settings, family)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        server = cls(address, ProxyHandler)
    except OverflowError as exc:
        raise UsageError("cannot serve on %s: %s" % (binding.display(settings.listen), exc)) \
            from None
    except OSError as exc:
        raise binding.bind_error(binding.display(settings.listen), exc) from None
    try:
        try:
            server.configure(settings)
        except config.ConfigError as exc:
            raise UsageError(str(exc)) from None
        if args.workers is not None:
            workers.check_server(server)
    except BaseException:
        server.server_close()
        raise
    return server


# -- running --------------------------------------------------------------------------------------

def run(args):
    """Serve until a signal; the exit status."""
    server = None
    try:
        settings = load_settings(args)
        serving.setup_logging(settings.log_level)
        args.workers = settings.workers
        workers.check_options(args)
        server = build_server(args, settings)
        metrics = []
        if settings.metrics is not None:
            metrics.append(exporter.metrics_server(
                settings.metrics, {"proxy": server}, shared_port=args.workers is not None,
                more=server.upstream_metrics, ready=server.ready))
    except (config.ConfigError, UsageError) as exc:
        sys.stderr.write("%s proxy: error: %s\n" % (PROG, exc))
        if server is not None:
            server.server_close()
        return EXIT_USAGE

    def ready():
        state = server.proxy_state.settings
        with_workers = ("" if args.workers is None else
                        ", %d workers (%s)" % (args.workers, args.balancing))
        told = ("SIGHUP: re-read %s" % args.config) if args.config else "SIGHUP: nothing"
        print("proxy (%s, %s engine%s) on %s -> %s (%s); SIGTERM: drain up to %g s, exit 0; "
              "SIGINT/SIGQUIT: stop at once; %s"
              % (type(server).package_class, cysocketserver.IMPLEMENTATION, with_workers,
                 binding.display(server.server_address),
                 ", ".join(spec.name for spec in state.upstreams), state.balance,
                 state.drain_timeout, told), flush=True)
        for endpoint in metrics:
            print("metrics on http://%s/metrics" % binding.display(endpoint.server_address),
                  flush=True)

    if args.workers is not None:
        def reload():
            # The workers are forked from this process: they take what it has just read.
            if _reloaded(args, server):
                server.reload()
        return workers.serve(server, metrics, ready, reload=reload)
    return service.run([server], extra=metrics, ready=ready,
                       actions={signal.SIGHUP: lambda: _reloaded(args, server)})
