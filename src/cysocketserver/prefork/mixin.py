"""PreforkMixIn: a server served by several worker processes, with a supervising parent."""
import os
import socket
from time import monotonic
from typing import Optional

from ..core.settings import checked, choice, positive_int, seconds, whole_number
from ..core.stats import counter_figures
from . import listeners
from .listeners import BALANCING
from .supervisor import Supervisor
from ..core.state import state_of

__all__ = ["PreforkMixIn", "default_workers", "settings"]


def default_workers():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Settings:
    """A server's prefork settings, checked."""

    __slots__ = ("workers", "balancing", "worker_timeout", "max_requests",
                 "max_requests_jitter")
    workers: int
    balancing: str
    worker_timeout: Optional[float]
    max_requests: Optional[int]
    max_requests_jitter: int


def settings(server, poll_interval):
    """The server's prefork settings, checked (TypeError/ValueError for a bad one)."""
    name = type(server).__name__
    result = Settings()
    workers = checked(server, "workers", positive_int, none_means="one per CPU")
    result.workers = default_workers() if workers is None else workers
    result.balancing = checked(server, "balancing", choice, BALANCING)
    timeout = checked(server, "worker_timeout", seconds, none_means="off")
    if timeout is not None and poll_interval is not None and timeout <= 2 * poll_interval:
        raise ValueError("%s.worker_timeout (%s s) must exceed twice serve_forever()'s "
                         "poll_interval (%s s): a worker's heartbeat comes once per "
                         "poll_interval" % (name, timeout, poll_interval))
    result.worker_timeout = timeout
    result.max_requests = checked(server, "max_requests", positive_int, none_means="off")
    result.max_requests_jitter = checked(server, "max_requests_jitter", whole_number, 0)
    if result.max_requests is not None and server.socket_type != socket.SOCK_STREAM:
        raise ValueError("%s.max_requests counts connections; a datagram server has none"
                         % name)
    if getattr(server, "socket", None) is not None:
        listeners.check(server, result.balancing)
    return result


class PreforkMixIn:
    """Serve with ``workers`` processes (default: one per CPU), forked and supervised by the
    process that calls serve_forever().

    Put it first among the bases, before the concurrency mix-in each worker uses::

        class Server(PreforkMixIn, ThreadingTCPServer): ...

    The parent binds the listener (or takes one passed by a service manager), forks the
    workers and watches them; each worker serves with the server's own serve loop
    (plain, threading, thread pool or greenlets) and handlers.  The parent serves nothing.

    ``balancing``: ``"shared"`` (one listener, an idle worker is woken per connection) or
    ``"reuseport"`` (a SO_REUSEPORT listener per worker, connections spread by the kernel);
    see ``cysocketserver.prefork.listeners``.  ``worker_timeout`` (seconds, None: off): a
    worker whose serve loop has not come round for that long is killed and replaced.
    ``max_requests`` (None: off): a worker that has accepted that many connections (plus a
    random 0..``max_requests_jitter``) retires and is replaced.  The server's
    ``drain_timeout`` bounds how long a stopping worker lets its connections finish.

    Signals to the parent (when serve_forever() runs in the main thread): SIGTERM stops
    gracefully (serve_forever() returns once the workers have drained), SIGINT and SIGQUIT
    stop at once (SIGINT then raises KeyboardInterrupt, as the stdlib's servers do), SIGHUP
    replaces every worker without refusing a connection, SIGTTIN and SIGTTOU add and remove a
    worker, SIGUSR2 starts the program anew (the code on disk now) on the same listener and
    hands over to it.  The same from code, in any thread: shutdown(), reload(), add_worker(),
    remove_worker(), upgrade().  A prefork server serves once: after a stop its listener is closed.

    In a worker, ``worker_index`` is its number (0 to workers-1; None in the parent),
    ``worker_started()`` is called before it serves, and shutdown() or SystemExit end that
    worker only (the parent replaces it).  stats() in the parent sums the workers' figures.
    """

    workers = None
    balancing = "shared"
    worker_timeout = 30.0
    max_requests = None
    max_requests_jitter = 0
    worker_index = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        mine = mro.index(PreforkMixIn)
        early = [klass.__name__ for klass in mro[:mine]
                 if "serve_forever" in vars(klass) and klass is not cls]
        if early:
            raise TypeError("%s: PreforkMixIn must come before %s among the bases, or it "
                            "would not be the one serving" % (cls.__name__, ", ".join(early)))

    # -- hooks ---------------------------------------------------------------------------------------

    def worker_started(self):
        """Called in each worker process after the fork, before it serves: open what must be
        the worker's own here (database connections, random seeds).  Does nothing by
        default; an exception ends the worker (the parent retries with a back-off)."""

    # -- the parent ----------------------------------------------------------------------------------

    def server_bind(self):
        if (self.balancing == "reuseport" and hasattr(socket, "SO_REUSEPORT")
                and self.address_family in (socket.AF_INET, socket.AF_INET6)):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def serve_forever(self, poll_interval=0.5):
        """In the parent: fork the workers and supervise them until a stop.  (In a worker:
        serve, as the server class does.)"""
        if self.worker_index is not None:
            return super().serve_forever(poll_interval)
        state = state_of(self)
        if state.supervisor is not None and state.supervisor.running:
            raise RuntimeError("%s is serving already" % type(self).__name__)
        supervisor = state.supervisor = Supervisor(self, settings(self, poll_interval),
                                                   poll_interval)
        try:
            supervisor.run()
        finally:
            supervisor.close()

    def _worker_serve_forever(self, poll_interval):
        """What a worker runs: the serve_forever() of the classes after this one."""
        super().serve_forever(poll_interval)

    def _command(self, name):
        supervisor = state_of(self).supervisor
        if supervisor is None or not supervisor.running:
            raise RuntimeError("%s is not serving" % type(self).__name__)
        supervisor.command(name)
        return supervisor

    def shutdown(self):
        """In the parent: stop gracefully (as SIGTERM) and wait until serve_forever() has
        returned.  In a worker: stop that worker's loop (the parent replaces the worker)."""
        if self.worker_index is not None:
            return super().shutdown()
        supervisor = state_of(self).supervisor
        if supervisor is None or not supervisor.running:
            return
        supervisor.command("stop")
        supervisor.done.wait()

    def reload(self):
        """Replace every worker with a fresh one (as SIGHUP); returns at once."""
        self._command("reload")

    def add_worker(self):
        """One worker more (as SIGTTIN)."""
        self._command("more")

    def remove_worker(self):
        """One worker fewer (as SIGTTOU); never fewer than one."""
        self._command("fewer")

    def upgrade(self):
        """Start the program anew on the same listener and hand over to it once its workers
        serve (as SIGUSR2; see ``cysocketserver.prefork.upgrade``)."""
        self._command("upgrade")

    def stats(self):
        """In the parent, the workers' figures summed (their counters live in shared memory,
        per worker index, so nothing is lost or reset when a worker is replaced), and
        ``workers`` (how many it keeps), ``workers_serving``, ``worker_restarts_total``,
        ``worker_crashes_total``, ``worker_timeouts_total`` and ``per_worker``: for each
        index, its ``pid``, ``state``, ``requests_total`` (connections accepted),
        ``connections_active``, ``restarts`` and ``heartbeat_age_seconds``.  The bytes of
        connections still open in a worker are counted once they end."""
        if self.worker_index is not None:
            return super().stats()
        supervisor = state_of(self).supervisor
        if supervisor is None:
            rows, target, crashes, timeouts = [], self.workers or default_workers(), 0, 0
        else:
            rows, target, crashes, timeouts = supervisor.snapshot()
        totals = {}
        for row in rows:
            for name, value in row.pop("totals").items():
                totals[name] = totals.get(name, 0) + value
        figures = {
            "server": type(self).__name__,
            "model": "prefork+" + self._model_class.name,
            "engine": self._engine_name,
            "uptime_seconds": monotonic() - self._started_at,
            "connections_active": sum(row["connections_active"] for row in rows),
        }
        figures.update(counter_figures(totals))
        figures["workers"] = target
        figures["workers_serving"] = sum(1 for row in rows if row["state"] == "serving")
        figures["worker_restarts_total"] = sum(row["restarts"] for row in rows)
        figures["worker_crashes_total"] = crashes
        figures["worker_timeouts_total"] = timeouts
        figures["per_worker"] = rows
        return figures

    def server_close(self):
        """In the parent: a supervisor still running is stopped at once; then the listener
        closes."""
        if self.worker_index is None:
            supervisor = state_of(self).supervisor
            if supervisor is not None and supervisor.running:
                supervisor.command("fast")
                supervisor.done.wait()
        super().server_close()
