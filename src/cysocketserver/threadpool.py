"""A bounded pool of reusable worker threads.

``WorkerPool(max_threads)`` runs callables on at most ``max_threads`` OS threads, started on
demand and reused: a job goes to an idle thread when there is one, else to a new thread while
there are fewer than ``max_threads``.  When every thread is busy, ``try_submit()`` refuses the
job (the caller decides: a server stops accepting until ``on_free`` says a thread is free) and
``submit()`` queues it (first in, first out; the queue is unbounded, the threads are not).
A thread that stays idle for ``idle_timeout`` seconds exits.

A job's result and exception are the caller's business (wrap the callable); an exception that
escapes a job is printed and never ends the worker.  After ``fork()`` the child starts with an
empty pool (the parent's threads do not exist there; the parent's queued jobs stay the
parent's).
"""
import itertools
import os
import sys
import threading
from _weakrefset import WeakSet  # weakref.WeakSet itself, which threading has loaded already
from collections import deque
from time import monotonic

__all__ = ["WorkerPool"]

_pools = WeakSet()


class _Worker:
    """One thread's hand-off slot: the job given to it while it was idle, and its wake-up."""

    __slots__ = ("job", "wake")

    def __init__(self):
        self.job = None
        self.wake = threading.Lock()
        self.wake.acquire()  # released once per job handed over


_STOP = (None, ())


class WorkerPool:
    """At most ``max_threads`` reusable threads (see the module docstring).

    ``on_free``: None, or a callable run (in the worker thread, after it finished a job and
    found no queued job) whenever a thread becomes free.  ``busy``, ``idle``, ``size``: threads
    running a job, waiting for one, alive.  ``max_threads`` may be changed later: it bounds the
    threads started from then on.
    """

    def __init__(self, max_threads, *, idle_timeout=10.0, daemon=True,
                 name="cysocketserver-worker"):
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.max_threads = max_threads
        self.idle_timeout = idle_timeout
        self.daemon = daemon
        self.name = name
        self.on_free = None
        self._numbers = itertools.count(1)
        self._reset()
        self._closed = False
        _pools.add(self)

    def _reset(self):
        self._lock = threading.Lock()
        self._idle = []          # idle _Worker slots, the most recently idle last
        self._queue = deque()    # (fn, args) that submit() could not hand over yet
        self._size = 0           # threads started and not yet exited
        self._threads = set()

    # -- counts ----------------------------------------------------------------------------------

    @property
    def size(self):
        return self._size

    @property
    def idle(self):
        return len(self._idle)

    @property
    def busy(self):
        return self._size - len(self._idle)

    # -- submitting --------------------------------------------------------------------------------

    def try_submit(self, fn, *args):
        """Run ``fn(*args)`` on an idle thread, or a new one below ``max_threads``; False (and
        nothing queued) when every thread is busy, or after shutdown()."""
        with self._lock:
            if self._closed:
                return False
            if self._idle:
                self._hand_over(fn, args)
                return True
            if self._size >= self.max_threads:
                return False
            thread = self._new_thread(fn, args)
        self._start(thread)
        return True

    def submit(self, fn, *args):
        """Run ``fn(*args)`` as try_submit() would, or queue it until a thread is free."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a pool after shutdown()")
            if self._idle:
                self._hand_over(fn, args)
                return
            if self._size >= self.max_threads:
                self._queue.append((fn, args))
                return
            thread = self._new_thread(fn, args)
        self._start(thread)

    def _hand_over(self, fn, args):
        # Under the lock.  The most recently idle thread: the others time out sooner.
        worker = self._idle.pop()
        worker.job = (fn, args)
        worker.wake.release()

    def _new_thread(self, fn, args):
        # Under the lock: the thread counts from now on (started outside the lock).
        thread = threading.Thread(target=self._work, args=(_Worker(), fn, args),
                                  name="%s-%d" % (self.name, next(self._numbers)),
                                  daemon=self.daemon)
        self._size += 1
        self._threads.add(thread)
        return thread

    def _start(self, thread):
        try:
            thread.start()
        except BaseException:  # no more threads to be had: the job is not run
            with self._lock:
                self._size -= 1
                self._threads.discard(thread)
            raise

    # -- the workers -------------------------------------------------------------------------------

    def _work(self, worker, fn, args):
        lock = self._lock
        try:
            while True:
                try:
                    fn(*args)
                except SystemExit:
                    pass
                except BaseException:
                    _report("a job of %s" % threading.current_thread().name)
                fn = args = None
                with lock:
                    if self._queue:
                        fn, args = self._queue.popleft()
                        continue
                    if self._closed:
                        return
                    self._idle.append(worker)
                self._notify_free()
                got = worker.wake.acquire(timeout=self.idle_timeout)
                with lock:
                    if not got:
                        if worker.job is None:
                            # Idle for idle_timeout: leave (nobody handed this slot a job).
                            self._idle.remove(worker)
                            return
                        worker.wake.acquire()  # handed a job just as the wait timed out
                    fn, args = worker.job
                    worker.job = None
                if fn is None:
                    return  # shutdown()
        finally:
            with lock:
                self._size -= 1
                self._threads.discard(threading.current_thread())

    def _notify_free(self):
        on_free = self.on_free
        if on_free is None:
            return
        try:
            on_free()
        except BaseException:
            _report("the on_free callback of %s" % self.name)

    # -- stopping ----------------------------------------------------------------------------------

    def shutdown(self, wait=True, timeout=None):
        """Take no more work; idle threads exit, busy ones finish their job and the queue first.

        With ``wait``, join the threads, for at most ``timeout`` seconds in all (None: until
        they have finished).
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in idle:
                worker.job = _STOP
                worker.wake.release()
            threads = list(self._threads)
        if not wait:
            return
        me = threading.current_thread()
        deadline = None if timeout is None else monotonic() + timeout
        for thread in threads:
            if thread is me:
                continue  # a job that shuts its own pool down cannot wait for itself
            left = None if deadline is None else max(0.0, deadline - monotonic())
            thread.join(left)

    def _after_fork_in_child(self):
        # The parent's threads do not exist here, and its lock may have been held by one.
        self._reset()


def _report(where):
    """Print the exception being handled, as threading does; a failure to print (stderr
    closed, say) must not end the worker either."""
    try:
        print("Exception in %s:" % where, file=sys.stderr)
        import traceback  # only once a task has failed

        traceback.print_exc()
    except BaseException:
        pass


def _reset_pools_after_fork():
    for pool in list(_pools):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_after_fork)
