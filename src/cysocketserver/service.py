"""Running servers as a service, with the signals operators expect (as nginx, gunicorn and
Kubernetes use them).  Each server serves in a thread of its own while the main thread waits:

- SIGTERM: stop accepting, log one line saying how many connections drain and for how long,
  let them finish for up to each server's ``drain_timeout``, cut the rest; ``run()`` returns 0.
- SIGINT (Ctrl-C): stop at once, cutting every open connection; returns 130.
- SIGQUIT: the same; returns 131.  Either cuts a SIGTERM drain short.

Either way one last line says what became of the connections.
"""
import logging
import signal
import socket
import threading
import time

__all__ = ["run", "drained", "EXIT_INTERRUPTED", "EXIT_QUIT"]

log = logging.getLogger("cysocketserver")

# Exit statuses for a stop at once: 128 + the signal's number, as a shell reports a process
# that signal ended.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_QUIT = 128 + signal.SIGQUIT
_AT_ONCE = {"SIGINT": EXIT_INTERRUPTED, "SIGQUIT": EXIT_QUIT}
# How long after its drain deadline a server may take to close before it is left behind (a
# prefork parent's workers get a little longer than their drain: see prefork.supervisor).
_GRACE = 5.0
# How long a stop at once waits for the servers to close before returning anyway (the
# process then exits, which closes whatever is left).
_AT_ONCE_GRACE = 2.0
_SLICE = 0.1


class _Stop:
    """What the signals asked for, set from the handlers and read by the waiting loop."""

    def __init__(self):
        self.graceful = None     # the name of the signal that asked to drain
        self.at_once = None      # the name of the signal that asked to stop at once
        self.actions = []        # calls asked for by other signals, run by the loop

    def on_signal(self, signum, _frame):
        name = signal.Signals(signum).name
        if name in _AT_ONCE:
            self.at_once = self.at_once or name
        else:
            self.graceful = self.graceful or name


def _serve(server, failures):
    try:
        server.serve_forever()
    except BaseException as exc:  # reported by run(), which then stops the others
        failures.append((server, exc))


def _stop_gracefully(server):
    server.shutdown()
    server.server_close()


def _stop_at_once(server):
    if getattr(server, "drain_timeout", None) is not None:
        server.drain_timeout = 0     # 0: the drain cuts every open connection at once
    _stop_gracefully(server)


def _start(target, server, name, *args):
    thread = threading.Thread(target=target, args=(server,) + args, daemon=True,
                              name="%s-%s" % (name, type(server).__name__))
    thread.start()
    return thread


def _join(threads, deadline, stop=None):
    """Wait for ``threads`` until ``deadline``; False at once if a stop at once is asked."""
    for thread in threads:
        while thread.is_alive() and time.monotonic() < deadline:
            if stop is not None and stop.at_once:
                return False
            thread.join(_SLICE)
    return True


def _total(servers, name):
    return sum(server.stats().get(name, 0) for server in servers)


def _streams(servers):
    return [server for server in servers
            if getattr(server, "socket_type", socket.SOCK_STREAM) == socket.SOCK_STREAM]


def drained(servers, live):
    """The default last words: what became of the ``live`` stream connections open when the
    stop began -- those the drain did not cut finished (a datagram server has no connections,
    and its datagrams are not counted)."""
    streams = _streams(servers)
    if not streams:
        return ""
    cut = _total(streams, "drain_cut_total")
    return "%d connection(s) finished, %d cut" % (max(live - cut, 0), cut)


def run(servers, extra=(), ready=None, actions=None, stop_at_once=None, summary=drained):
    """Serve every server in ``servers`` until a signal, then stop them as the module says.

    ``extra`` servers (a metrics endpoint) serve alongside and close without draining.
    ``ready()`` is called once the signal handlers are in place and the servers serve (say
    it then, so that a signal sent on seeing it is handled).  ``actions`` maps other signals
    to a call made in the main thread when one comes (SIGHUP: reload...).  ``stop_at_once``
    stops one server at once (default: a drain_timeout of 0, shutdown(), server_close()).
    ``summary(servers, live)`` gives the end of the last line (``live``: the connections
    open when the stop began).  Must be called from the main thread
    (it installs the signal handlers).  Returns the exit status: 0 after SIGTERM (or when
    every server stopped serving by itself), 130 after SIGINT, 131 after SIGQUIT, 1 when a
    server's serve_forever() failed.
    """
    servers, extra = list(servers), list(extra)
    stop = _Stop()
    handlers = {signal.SIGTERM: stop.on_signal, signal.SIGINT: stop.on_signal}
    if hasattr(signal, "SIGQUIT"):
        handlers[signal.SIGQUIT] = stop.on_signal
    for signum, action in (actions or {}).items():
        handlers[signum] = lambda _signum, _frame, action=action: stop.actions.append(action)
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    failures = []
    try:
        serving = [_start(_serve, server, "serve", failures) for server in servers + extra]
        if ready is not None:
            ready()
        # Waits in short slices: the signal handlers run in this thread between them.
        while not (stop.graceful or stop.at_once or failures):
            while stop.actions:
                stop.actions.pop(0)()
            if servers and not any(thread.is_alive() for thread in serving[:len(servers)]):
                break    # every server stopped by itself (a prefork server's upgrade)
            time.sleep(_SLICE)
        began = time.monotonic()
        live = _total(_streams(servers), "connections_active")
        if not stop.at_once:
            longest = max([server.drain_timeout or 0.0 for server in _streams(servers)] + [0.0])
            if live and stop.graceful and not failures:
                log.info("%s: stopped accepting; draining %d connection(s) for up to %g s "
                         "(Ctrl-C or SIGQUIT cuts them at once)", stop.graceful, live, longest)
            stopping = [_start(_stop_gracefully, server, "stop") for server in servers + extra]
            _join(stopping + serving, began + longest + _GRACE, stop)
        if stop.at_once:
            live = _total(_streams(servers), "connections_active")
            log.info("%s: stopping at once; %d connection(s) cut", stop.at_once, live)
            for server in extra:
                _start(_stop_gracefully, server, "stop")
            cutting = [_start(stop_at_once or _stop_at_once, server, "cut") for server in servers]
            _join(cutting, time.monotonic() + _AT_ONCE_GRACE)
            return _AT_ONCE[stop.at_once]
        if failures:
            server, exc = failures[0]
            log.error("%s stopped serving: %s: %s", type(server).__name__,
                      type(exc).__name__, exc)
            return 1
        words = summary(servers, live)
        log.info("%sstopped in %.2f s%s", stop.graceful + ": " if stop.graceful else "",
                 time.monotonic() - began, "; " + words if words else "")
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
