"""The prefork parent: it forks the workers, watches them and replaces them.

The supervisor runs in the thread that called serve_forever().  It sleeps until something
happens (a signal, a worker's note on the notify pipe, a child's exit) or a tenth of a second
passes, then:

- reaps the workers that exited and folds their counters into their index's totals;
- replaces a worker that died: at once if it had been serving, with a doubling back-off when
  workers of that index die before they serve (a broken start does not become a fork loop);
- kills (SIGKILL) a serving worker whose heartbeat is older than ``worker_timeout``, and a
  starting one that has not served within it;
- starts the successor of a worker that retires on its own (max_requests);
- carries out the commands: ``reload`` (SIGHUP), ``more``/``fewer`` (SIGTTIN/SIGTTOU),
  ``stop`` (SIGTERM), ``fast`` (SIGINT, SIGQUIT) and ``upgrade`` (SIGUSR2, ``upgrade.py``).

A reload starts every successor first and retires a worker only once its successor serves, so
connections are accepted throughout.  The signals are taken only when serve_forever() runs in
the main thread (Python delivers signals there); the same commands are methods of the server.
"""
import collections
import errno
import logging
import os
import random
import select
import signal
import threading
import warnings
from time import monotonic

from .. import _engine
from .listeners import Listeners
from .scoreboard import (ORDER_NONE, ORDER_SWEEP, READY, RETIRING, STARTING, STATE_NAMES,
                         Scoreboard)
from . import upgrade as _upgrade
from . import worker as _worker

__all__ = ["Supervisor", "RESPAWN_FIRST", "RESPAWN_MAX", "FAST_STOP_GRACE", "STOP_GRACE",
           "DEFAULT_DRAIN"]

log = logging.getLogger("cysocketserver.prefork")

# A worker that dies before it serves is retried after this long, doubling up to the maximum.
RESPAWN_FIRST = 0.1
RESPAWN_MAX = 10.0
# A worker that served at least this long before it died counts as healthy: replaced at once.
HEALTHY_AFTER = 1.0
# How long a fast stop waits for the workers before SIGKILL.
FAST_STOP_GRACE = 1.0
# Beyond the drain deadline, how long stopping workers get before SIGKILL.
STOP_GRACE = 2.0
# How long the parent waits for stopping workers when the server has no drain_timeout.
DEFAULT_DRAIN = 30.0
_TICK = 0.1
# The least time a new program started by an upgrade gets to have all its workers serving.
UPGRADE_TIMEOUT = 30.0
_SIGNAL_COMMANDS = {"SIGHUP": "reload", "SIGTTIN": "more", "SIGTTOU": "fewer",
                    "SIGTERM": "stop", "SIGINT": "interrupt", "SIGQUIT": "fast",
                    "SIGUSR2": "upgrade"}


class Process:
    """The parent's record of one worker process."""

    __slots__ = ("pid", "index", "generation", "slot", "started", "retiring", "successor_of",
                 "was_ready")

    def __init__(self, pid, index, generation, slot, successor_of):
        self.pid = pid
        self.index = index
        self.generation = generation
        self.slot = slot
        self.started = monotonic()
        self.retiring = False
        self.successor_of = successor_of
        self.was_ready = False


class IndexRecord:
    """What the parent keeps per worker index, across the processes that served it."""

    __slots__ = ("retired", "restarts", "failures", "next_start", "generations")

    def __init__(self, fields):
        self.retired = dict.fromkeys(fields, 0)
        self.restarts = 0
        self.failures = 0          # deaths before serving, in a row
        self.next_start = 0.0
        self.generations = 0


class Supervisor:
    def __init__(self, server, settings, poll_interval):
        self.server = server
        self.settings = settings
        self.poll_interval = poll_interval
        counters_class = _engine.current().Counters
        self.fields = tuple(counters_class.FIELDS)
        # Room for every worker twice over (a reload runs old and new side by side), and more.
        self.board = Scoreboard(max(64, 4 * settings.workers), counters_class)
        self.listeners = Listeners(server, settings.balancing)
        self.target = settings.workers
        self.procs = {}                  # pid -> Process
        self.serving = {}                # index -> Process accepting for it (or starting to)
        self.incoming = {}               # index -> Process that will replace serving[index]
        self.stale = set()               # indexes to reload
        self.indexes = {}                # index -> IndexRecord
        self.commands = collections.deque()
        self.crashes_total = 0
        self.timeouts_total = 0
        self.stopping = None             # None, "stop" or "fast"
        self.deadline = None
        self.interrupted = False
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.running = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Only the parent writes to this pipe: when the parent is gone, the workers read EOF.
        self._life_r, self._life_w = os.pipe()
        self.parent_pid = os.getpid()
        self.upgrade = None              # an upgrade.Upgrade in progress
        # Started by another parent's upgrade: tell it once every worker serves.
        self._announce_fd = _upgrade.take_notify_fd()

    # -- commands (any thread, or a signal handler) ----------------------------------------------

    def command(self, name):
        self.commands.append(name)
        self.wake()

    def wake(self):
        try:
            os.write(self._wake_w, b"c")
        except OSError:
            pass

    def _on_signal(self, signum, _frame):
        name = signal.Signals(signum).name
        if name == "SIGCHLD":
            self.wake()
        else:
            self.command(_SIGNAL_COMMANDS[name])

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for name in list(_SIGNAL_COMMANDS) + ["SIGCHLD"]:
            signum = getattr(signal, name, None)
            if signum is not None:
                previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    # -- the loop ------------------------------------------------------------------------------------

    def run(self):
        previous = self._install_signals()
        self.running = True
        try:
            for index in range(self.target):
                self._record(index)
            while True:
                self._sleep()
                # stats() (any thread) reads a state that one whole step has changed.
                with self.lock:
                    if not self._step():
                        break
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            with self.lock:
                self._kill_all(signal.SIGKILL)
                self._reap(block=True)
            self.running = False
            self.done.set()
        if self.interrupted:
            raise KeyboardInterrupt

    def _step(self):
        """One look at everything; False once a stop has finished."""
        self._reap()
        self._carry_out_commands()
        if self.upgrade is not None:
            self._check_upgrade()
        if self.stopping is not None:
            if not self.procs:
                return False
            if monotonic() >= self.deadline:
                self._kill_all(signal.SIGKILL)
            return True
        self._check_health()
        self._start_missing()
        return True

    def _sleep(self):
        watched = [self._wake_r]
        if self.upgrade is not None:
            watched.append(self.upgrade.ready_fd)
        try:
            ready, _, _ = select.select(watched, [], [], _TICK)
        except InterruptedError:
            return
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _record(self, index):
        record = self.indexes.get(index)
        if record is None:
            record = self.indexes[index] = IndexRecord(self.fields)
        return record

    # -- starting workers ----------------------------------------------------------------------------

    def _start_missing(self):
        now = monotonic()
        for index in range(self.target):
            record = self._record(index)
            if now < record.next_start:
                continue
            current = self.serving.get(index)
            if current is None:
                self._spawn(index, None)
            elif (index in self.stale and index not in self.incoming
                  and current.slot.state == READY):
                self._spawn(index, current)

    def _spawn(self, index, replacing):
        record = self._record(index)
        record.generations += 1
        if record.generations > 1:
            record.restarts += 1
        slot = self.board.allocate(index, record.generations)
        if slot is None:
            log.error("no scoreboard slot left for worker %d", index)
            record.next_start = monotonic() + RESPAWN_MAX
            return
        listener = self.listeners.for_index(index)
        settings = self.settings
        limit = settings.max_requests
        if limit is not None and settings.max_requests_jitter:
            limit += random.randint(0, settings.max_requests_jitter)
        job = _worker.Job(
            index=index, slot=slot, listener=listener,
            others=self.listeners.others(index), parent_pid=self.parent_pid,
            life_fd=self._life_r, notify_fd=self._wake_w,
            parent_fds=tuple(fd for fd in (self._wake_r, self._life_w, self._announce_fd)
                             if fd is not None),
            max_requests=limit,
            poll_interval=self.poll_interval)
        with warnings.catch_warnings():
            # Python 3.12+ warns of fork() in a process with threads (a metrics endpoint, the
            # test runner).  The worker touches no lock another thread of the parent may hold:
            # it builds its own serve loop, hub, registry and threads.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            _worker.run(self.server, job, self.server._worker_serve_forever)
        slot.pid = pid
        proc = Process(pid, index, record.generations, slot, replacing)
        self.procs[pid] = proc
        if replacing is None:
            self.serving[index] = proc
        else:
            self.incoming[index] = proc
        log.debug("worker %d started (pid %d)", index, pid)

    # -- watching them -------------------------------------------------------------------------------

    def _reap(self, block=False):
        for pid, proc in list(self.procs.items()):
            try:
                reaped, status = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                reaped, status = pid, 0
            if reaped == 0:
                continue
            self._gone(proc, status)

    def _gone(self, proc, status):
        del self.procs[proc.pid]
        record = self._record(proc.index)
        for name, value in proc.slot.totals().items():
            record.retired[name] += value
        ready = proc.was_ready or proc.slot.state in (READY, RETIRING)
        self.board.release(proc.slot)
        if self.serving.get(proc.index) is proc:
            del self.serving[proc.index]
        if self.incoming.get(proc.index) is proc:
            del self.incoming[proc.index]
        if proc.retiring or self.stopping is not None:
            return
        code = os.waitstatus_to_exitcode(status) if status else 0
        lived = monotonic() - proc.started
        if ready and lived >= HEALTHY_AFTER:
            record.failures = 0
            record.next_start = 0.0
        else:
            record.failures += 1
            pause = min(RESPAWN_FIRST * 2 ** (record.failures - 1), RESPAWN_MAX)
            record.next_start = monotonic() + pause
        if code != 0 or not ready:
            self.crashes_total += 1
            log.warning("worker %d (pid %d) %s; %s", proc.index, proc.pid,
                        _describe(code, ready),
                        "starting another" if record.next_start == 0.0
                        else "next try in %.1f s" % (record.next_start - monotonic()))

    def _check_health(self):
        now = monotonic()
        timeout = self.settings.worker_timeout
        for proc in list(self.procs.values()):
            state = proc.slot.state
            if state == READY and not proc.was_ready:
                proc.was_ready = True
                if self.incoming.get(proc.index) is proc:
                    self._promote(proc)
                self._maybe_announce()
            elif state == RETIRING and not proc.retiring:
                # Retiring on its own (max_requests): its successor starts now.
                proc.retiring = True
                proc.was_ready = True
                if self.serving.get(proc.index) is proc:
                    del self.serving[proc.index]
                self._record(proc.index).next_start = 0.0
            if timeout is None or proc.retiring:
                continue
            if state == STARTING and now - proc.started > timeout:
                log.warning("worker %d (pid %d) did not start serving within %.1f s: killed",
                            proc.index, proc.pid, timeout)
                self._kill(proc, signal.SIGKILL)
            elif state == READY and now - proc.slot.heartbeat > timeout:
                log.warning("worker %d (pid %d) missed its heartbeat for %.1f s: killed",
                            proc.index, proc.pid, timeout)
                self.timeouts_total += 1
                self._kill(proc, signal.SIGKILL)

    def _promote(self, proc):
        """A reloaded index's successor serves: retire the worker it replaces."""
        del self.incoming[proc.index]
        old = self.serving.get(proc.index)
        self.serving[proc.index] = proc
        self.stale.discard(proc.index)
        if old is not None and old is not proc:
            self._retire(old, sweep=False)

    def _retire(self, proc, sweep):
        proc.retiring = True
        proc.slot.order = ORDER_SWEEP if sweep else ORDER_NONE
        self._kill(proc, signal.SIGTERM)

    def _kill(self, proc, signum):
        try:
            os.kill(proc.pid, signum)
        except ProcessLookupError:
            pass

    def _kill_all(self, signum):
        for proc in list(self.procs.values()):
            self._kill(proc, signum)

    # -- commands ------------------------------------------------------------------------------------

    def _carry_out_commands(self):
        while self.commands:
            name = self.commands.popleft()
            if self.stopping is not None and name not in ("fast", "interrupt"):
                continue
            getattr(self, "_do_" + name)()

    def _do_reload(self):
        log.info("reloading: replacing %d worker(s)", len(self.serving))
        self.stale.update(self.serving)
        for index in self.stale:
            self._record(index).next_start = 0.0

    def _do_more(self):
        if self.target >= self.board.capacity // 2:
            log.warning("cannot add a worker: %d is the most", self.target)
            return
        self.target += 1
        log.info("workers: %d", self.target)

    def _do_fewer(self):
        if self.target <= 1:
            return
        self.target -= 1
        index = self.target
        refused = self.listeners.retire_index(index)
        for table in (self.serving, self.incoming):
            proc = table.pop(index, None)
            if proc is not None:
                # With reuseport the index's listener closes after this worker: it empties it.
                self._retire(proc, sweep=refused)
        self.stale.discard(index)
        log.info("workers: %d", self.target)

    def _do_stop(self):
        self._stop(sweep=self.listeners.stop_all())

    def _stop(self, sweep):
        """Retire every worker; ``sweep``: they empty the listeners' queues first."""
        drain = getattr(self.server, "drain_timeout", None)
        self.stopping = "stop"
        self.deadline = (monotonic() + _worker.SWEEP_LIMIT
                         + (DEFAULT_DRAIN if drain is None else drain) + STOP_GRACE)
        log.debug("stopping: %d worker(s) finish their connections", len(self.procs))
        for proc in list(self.procs.values()):
            self._retire(proc, sweep=sweep)

    def _do_upgrade(self):
        if self.upgrade is not None:
            log.warning("an upgrade is in progress already")
            return
        shared = self.settings.balancing == "shared"
        timeout = max(self.settings.worker_timeout or 0.0, UPGRADE_TIMEOUT)
        self.upgrade = _upgrade.Upgrade(self.server.socket if shared else None, timeout)
        log.info("upgrading: started the new program (pid %d)", self.upgrade.pid)

    def _check_upgrade(self):
        outcome = self.upgrade.poll()
        if outcome is None:
            return
        upgrade, self.upgrade = self.upgrade, None
        if outcome == "failed":
            log.error("upgrade failed: the new program (pid %d) did not get ready; "
                      "serving on", upgrade.pid)
            upgrade.abandon(signal.SIGKILL)
            return
        upgrade.close()
        log.info("upgraded: pid %d serves; retiring this parent's workers", upgrade.pid)
        if self.settings.balancing == "shared":
            # The listener is the new program's too: its queue is served on, never refused.
            self.listeners.release_all()
            self._stop(sweep=False)
        else:
            # Our SO_REUSEPORT listeners close: new handshakes go to the new program's.
            self._stop(sweep=self.listeners.stop_all())

    def _maybe_announce(self):
        if self._announce_fd is None or self.stopping is not None:
            return
        if all(index in self.serving and self.serving[index].slot.state == READY
               for index in range(self.target)):
            _upgrade.announce_ready(self._announce_fd)
            self._announce_fd = None

    def _do_fast(self):
        if self.stopping != "fast":
            self.stopping = "fast"
            self.deadline = monotonic() + FAST_STOP_GRACE
            self.listeners.stop_all()
            signum = getattr(signal, "SIGQUIT", signal.SIGTERM)
            self._kill_all(signum)

    def _do_interrupt(self):
        self.interrupted = threading.current_thread() is threading.main_thread()
        self._do_fast()

    # -- figures -------------------------------------------------------------------------------------

    def snapshot(self):
        """(per-index figures, workers kept, crashes, timeouts), as of one moment."""
        with self.lock:
            return self.figures(), self.target, self.crashes_total, self.timeouts_total

    def figures(self):
        """Per index: its totals (retired + live workers), restarts, and its serving worker."""
        now = monotonic()
        rows = []
        live = list(self.procs.values())
        for index in sorted(self.indexes):
            record = self.indexes[index]
            totals = dict(record.retired)
            active = 0
            for proc in live:
                if proc.index != index:
                    continue
                live_totals = proc.slot.totals()
                for name, value in live_totals.items():
                    totals[name] += value
                active += _active(live_totals)
            current = self.serving.get(index)
            rows.append({
                "index": index,
                "pid": current.pid if current is not None else None,
                "state": (STATE_NAMES.get(current.slot.state, "?") if current is not None
                          else ("removed" if index >= self.target else "down")),
                "requests_total": totals.get("connections_total", 0),
                "connections_active": active,
                "restarts": record.restarts,
                "heartbeat_age_seconds": (now - current.slot.heartbeat
                                          if current is not None else None),
                "totals": totals,
            })
        return rows

    def close(self):
        for fd in (self._wake_r, self._wake_w, self._life_r, self._life_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.listeners.close()
        self.board.close()


def _active(totals):
    return max(0, totals.get("connections_total", 0) - totals.get("connections_closed_total", 0))


def _describe(code, ready):
    if code < 0:
        try:
            what = "killed by %s" % signal.Signals(-code).name
        except ValueError:
            what = "killed by signal %d" % -code
    else:
        what = "exited with status %d" % code
    return what if ready else what + " before serving"
