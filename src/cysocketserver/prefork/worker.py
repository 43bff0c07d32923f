"""One prefork worker process, from just after fork() to its exit; ``run()`` never returns.

The worker serves with the server's own serve loop (the next serve_forever() after
PreforkMixIn's in the class's MRO: plain, threading, pool or greenlet) on parts of its own: a
fresh serve loop and hub, and a connection registry whose counters live in its scoreboard slot.

Between wake-ups the serve loop calls the worker's housekeeping (``Worker.tick``), at least
every ``poll_interval``: it writes the heartbeat, looks whether the parent is still there,
whether ``max_requests`` is reached, and whether it was asked to stop.

How a worker stops:

- SIGTERM from the parent (a reload, a stop, one worker fewer): it stops accepting (first
  emptying the listener's queue when the parent says the listener closes after it), closes its
  copy of the listener, lets its open connections finish (the server's ``drain_timeout`` cuts
  them after that long) and exits 0.
- max_requests: the same, on its own initiative; the parent starts its successor at once.
- SIGINT or SIGQUIT: it exits at once.
- the parent is gone (the pipe only the parent writes to reads end-of-file, or getppid(),
  looked at every half second, changed): it stops accepting at once and exits within
  ``ORPHAN_GRACE`` seconds, so that no orphan keeps the port.
"""
import os
import select
import signal
import socket
import sys
import threading
import traceback
from time import monotonic
from typing import Any, List, Optional, Tuple

from .. import _engine
from ..core.registry import ConnectionRegistry
from ..core.state import state_of
from .scoreboard import ORDER_SWEEP, READY, RETIRING

__all__ = ["run", "Job", "ORPHAN_GRACE", "SWEEP_LIMIT"]

# Seconds an orphaned worker has to finish before it exits regardless.
ORPHAN_GRACE = 1.0
# How often the heartbeat also asks getppid() whether the parent is still there.
PARENT_LOOK = 0.5
# The longest a stopping worker keeps taking connections already queued on a listener about to
# close (new handshakes are refused by then, so the queue only shrinks).
SWEEP_LIMIT = 2.0
# Signals the parent handles that must not stop a worker (a terminal's hangup or a signal
# sent to the whole process group reaches the workers too).
_IGNORED = tuple(getattr(signal, name) for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR2")
                 if hasattr(signal, name))


class Job:
    """What the parent hands a worker it forks."""

    __slots__ = ("index", "slot", "listener", "others", "parent_pid", "life_fd",
                 "notify_fd", "parent_fds", "max_requests", "poll_interval")
    index: int
    slot: Any                     # scoreboard.Slot
    listener: socket.socket       # the one it serves
    others: List[socket.socket]   # the parent's other listeners: closed in the worker
    parent_pid: int
    life_fd: int                  # reads end-of-file when the parent is gone
    notify_fd: int                # wakes the parent
    parent_fds: Tuple[int, ...]   # the parent's ends of those pipes: closed in the worker
    max_requests: Optional[int]   # with its jitter
    poll_interval: Optional[float]

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values[name])


class Worker:
    """The worker's own state, in the worker process."""

    def __init__(self, server, job):
        self.server = server
        self.job = job
        self.slot = job.slot
        self.counters = None
        self.stop_asked = False      # SIGTERM
        self.orphaned = False
        self.stopping = False
        self.next_parent_look = 0.0
        self.sweep_until = 0.0
        self.fd = job.listener.fileno()

    # -- setting up --------------------------------------------------------------------------------

    def become(self):
        """Make the forked copy of the server this worker's own."""
        server = self.server
        job = self.job
        for fd in job.parent_fds:
            _close_quietly(fd)
        for sock in job.others:
            sock.close()
        server.socket = job.listener
        old_loop = server._loop
        server._loop = server._make_loop()
        old_loop.close()
        engine = _engine.current()
        self.counters = engine.Counters(self.slot.counters_buffer)
        # Parts the parent made are the parent's: start from fresh ones, counting into this
        # worker's slot of the scoreboard.  The listener is shared with other processes (the
        # parent, the other workers, a successor): it is waited on with exclusive wake-ups,
        # and what is queued on it is never reset.
        state_of(server).become_worker(ConnectionRegistry(self.counters, engine.Meter),
                                       engine.name, self.tick)
        server.worker_index = job.index
        self._install_signals()
        self._watch_parent()

    def _install_signals(self):
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, _exit_now)
        if hasattr(signal, "SIGQUIT"):
            signal.signal(signal.SIGQUIT, _exit_now)
        for signum in _IGNORED:
            signal.signal(signum, _ignore)
        if hasattr(signal, "SIGCHLD"):
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def _on_stop(self, _signum, _frame):
        # Only a flag: the serve loop acts on it in tick(), in its own context.
        self.stop_asked = True

    def _watch_parent(self):
        life_fd = self.job.life_fd

        def watch():
            try:
                while os.read(life_fd, 1):
                    pass
            except OSError:
                pass
            self.orphaned = True
            # The serve loop notices at its next tick; this is the backstop for a worker whose
            # serving thread is busy in a handler.
            threading.Event().wait(ORPHAN_GRACE)
            _flush()
            os._exit(0)

        threading.Thread(target=watch, daemon=True, name="prefork-parent-watch").start()

    # -- serving -----------------------------------------------------------------------------------

    def serve(self, serve_forever, poll_interval):
        self.slot.beat()
        self.slot.state = READY
        self.notify()
        serve_forever(poll_interval)

    def notify(self):
        """Wake the parent to look at this worker's slot."""
        try:
            os.write(self.job.notify_fd, b"w")
        except OSError:
            pass

    def tick(self):
        """The serve loop's housekeeping, after each wake-up."""
        now = monotonic()
        slot = self.slot
        slot.beat(now)
        if self.stopping:
            self._try_to_stop(now)
            return
        if now >= self.next_parent_look:
            # A second way to learn the parent is gone (the pipe's write end could have been
            # inherited by another process of the parent's): a system call, so not every tick.
            self.next_parent_look = now + PARENT_LOOK
            if os.getppid() != self.job.parent_pid:
                self.orphaned = True
        if self.orphaned:
            self._begin_stop(now, sweep=False)
        elif self.stop_asked:
            self._begin_stop(now, sweep=slot.order == ORDER_SWEEP)
        elif (self.job.max_requests is not None
              and self.counters.connections_total >= self.job.max_requests):
            self._begin_stop(now, sweep=False)

    def _begin_stop(self, now, sweep):
        self.stopping = True
        self.sweep_until = now + SWEEP_LIMIT if sweep else 0.0
        self.slot.state = RETIRING
        self.notify()
        self._try_to_stop(now)

    def _try_to_stop(self, now):
        if now < self.sweep_until and _pending(self.fd):
            return  # take what is queued first: the loop is woken again at once
        server = self.server
        server._loop.request_shutdown(True)
        # No longer waited on here: an exclusive wake-up must go to a worker that accepts.
        server._loop.close()
        server.socket.close()


def _pending(fd):
    """Whether a connection (or datagram) waits on the listener."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _exit_now(_signum, _frame):
    _flush()
    os._exit(0)


def _ignore(_signum, _frame):
    pass


def run(server, job, serve_forever):
    """The worker's life; ``serve_forever`` is the server class's own (after PreforkMixIn)."""
    status = 0
    try:
        worker = Worker(server, job)
        worker.become()
        server.worker_started()
        worker.serve(serve_forever, job.poll_interval)
        # Stopped accepting (tick closed the listener): the open connections finish, up to
        # the server's drain_timeout, and the concurrency model winds down.
        server.server_close()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        _flush()
        os._exit(status)
