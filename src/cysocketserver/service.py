"""Running servers as a service: each serves in its own thread while the main thread waits for
SIGTERM or SIGINT; then every server stops accepting, drains (its ``drain_timeout``) and
closes, one line is logged, and ``run()`` returns 0.  A second SIGINT exits at once.
"""
import logging
import os
import signal
import threading
import time

__all__ = ["run", "EXIT_INTERRUPTED"]

log = logging.getLogger("cysocketserver")

# Exit status when a second SIGINT cuts the drain short: 128 + SIGINT, as a shell reports it.
EXIT_INTERRUPTED = 128 + signal.SIGINT
# How long after its drain deadline a server's thread may take to return before it is left.
_GRACE = 2.0


def _serve(server, failures):
    try:
        server.serve_forever()
    except BaseException as exc:  # reported by run(), which then stops the others
        failures.append((server, exc))


def run(servers, extra=(), ready=None, stop_signals=(signal.SIGTERM, signal.SIGINT)):
    """Serve every server in ``servers`` until a stop signal, then drain and close them.

    ``extra`` servers (a metrics endpoint) serve alongside but are closed without draining.
    ``ready()`` is called once the signal handlers are in place and the servers serve (say it
    then, so that a signal sent on seeing it is handled).  Must be called from the main thread
    (it installs the signal handlers).  Returns the exit status: 0 after a signal, 1 when a
    server's serve_forever() failed.
    """
    stopping = threading.Event()
    received = []
    failures = []

    def on_signal(signum, _frame):
        if received:
            if signum == signal.SIGINT:
                os.write(2, b"second SIGINT: exiting without waiting\n")
                os._exit(EXIT_INTERRUPTED)
            return
        received.append(signal.Signals(signum).name)
        stopping.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in stop_signals}
    threads = []
    try:
        for server in list(servers) + list(extra):
            thread = threading.Thread(target=_serve, args=(server, failures), daemon=True,
                                      name="serve-%s" % type(server).__name__)
            thread.start()
            threads.append(thread)
        if ready is not None:
            ready()
        # Waits in short slices: the signal handlers run in this thread between them.
        while not stopping.wait(0.2):
            if failures:
                break
        began = time.monotonic()
        live = sum(server.stats()["connections_active"] for server in servers)
        log.debug("stopping: draining %d connection(s)", live)
        for server in list(servers) + list(extra):
            server.shutdown()
        closers = [threading.Thread(target=server.server_close, daemon=True)
                   for server in servers]
        for closer in closers:
            closer.start()
        for server in extra:
            server.server_close()
        longest = max([server.drain_timeout or 0.0 for server in servers] + [0.0])
        deadline = began + longest + _GRACE
        for thread in closers + threads:
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(0.1)
        finished = sum(server.stats()["drain_finished_total"] for server in servers)
        cut = sum(server.stats()["drain_cut_total"] for server in servers)
        if failures:
            server, exc = failures[0]
            log.error("%s stopped serving: %s: %s", type(server).__name__,
                      type(exc).__name__, exc)
            return 1
        log.info("%s: stopped in %.2f s; %d connection(s) finished, %d cut",
                 received[0], time.monotonic() - began, finished, cut)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
