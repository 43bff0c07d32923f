"""``spawn()`` and ``Task``: more work on this thread's hub, beside a handler, joined or killed.

A task is one greenlet, made through the hub's own ``spawn()``; it starts when the hub next gets
a turn (when the caller waits, sleeps or joins).  ``join()`` of a finished task returns at once,
without a switch.

An exception a task raised is kept for ``join()``.  If the task object is garbage-collected
without ``join()`` ever having returned its outcome, the exception is reported on stderr, once,
with its traceback (as an unhandled exception in a thread is): never lost, never twice.  A
killed task's ending is not an error.
"""
import sys
import traceback

from greenlet import GreenletExit, getcurrent

from .hub import existing_hub, get_hub

__all__ = ["Task", "spawn"]

_NO_HUB = (
    "spawn() runs a task on a greenlet server's hub, and this thread runs none: call it from a "
    "greenlet server's handler (or in a thread whose hub is made first with "
    "cysocketserver.greenlets.get_hub()); to run work in a thread instead, start a "
    "threading.Thread, or wait for it from a handler with cysocketserver.to_thread()")
# The value with which join()'s timer wakes the joiner.
_TIMED_OUT = object()


def spawn(function, /, *args, **kwargs):
    """Run ``function(*args, **kwargs)`` in a new greenlet on this thread's hub: a ``Task``.

    RuntimeError in a thread that runs no hub (no greenlet server serves there).
    """
    if existing_hub() is None:
        raise RuntimeError(_NO_HUB)
    if not callable(function):
        raise TypeError("spawn() needs a callable, not %s" % type(function).__name__)
    task = Task(get_hub(), function, args, kwargs)
    task._greenlet = task._hub.spawn(task._run)
    return task


class Task:
    """A function running in a greenlet of its own on the hub of the thread that spawned it.

    ``join()`` and ``kill()`` are called from greenlets of that same thread (a handler, another
    task, or the thread's main greenlet, which waits on the hub).  Made by ``spawn()``.
    """

    __slots__ = ("_hub", "_greenlet", "_name", "_function", "_args", "_kwargs", "_done", "_result",
                 "_exception", "_waiters", "_retrieved")

    def __init__(self, hub, function, args, kwargs):
        self._hub = hub
        self._greenlet = None
        self._name = getattr(function, "__qualname__", None)   # for repr() and reports
        self._function = function    # None once started, or killed before it started
        self._args = args
        self._kwargs = kwargs
        self._done = False
        self._result = None
        self._exception = None
        self._waiters = None         # greenlets in join()/kill(), made on first wait
        self._retrieved = False      # join() has given the outcome to someone

    def __repr__(self):
        if not self._done:
            state = "pending" if self._function is not None else "running"
        elif self._exception is not None:
            state = "failed with %r" % (self._exception,)
        else:
            state = "done"
        return "<Task %s %s>" % (self._name or "?", state)

    # -- the greenlet ---------------------------------------------------------------------------

    def _run(self):
        function, args, kwargs = self._function, self._args, self._kwargs
        if function is None:
            return  # killed before it started: never run
        self._function = self._args = self._kwargs = None
        try:
            result = function(*args, **kwargs)
        except GreenletExit:
            self._finish(None, None)   # killed: an ending, not an error
        except Exception as exc:
            self._finish(None, exc)
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit: joiners get it too, and it goes on to the hub,
            # which hands Ctrl-C to the thread's main greenlet (a thread ends on SystemExit).
            self._finish(None, exc)
            self._retrieved = True
            raise
        else:
            self._finish(result, None)

    def _finish(self, result, exception):
        self._result = result
        self._exception = exception
        self._done = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                self._hub.wake(waiter)

    # -- the public face ------------------------------------------------------------------------

    def done(self):
        """Whether the task has ended (returned, raised, or was killed)."""
        return self._done

    def join(self, timeout=None):
        """Wait for the task to end, then return its function's result or raise its exception.

        Past ``timeout`` seconds (None: no limit), raise TimeoutError; the task keeps running.
        A killed task's join() returns None (unless it caught GreenletExit and returned).
        """
        if not self._done:
            self._wait(timeout)
        self._retrieved = True
        exception = self._exception
        if exception is not None:
            raise exception
        return self._result

    def kill(self):
        """End the task: GreenletExit is raised where it waits (its ``finally`` blocks run);
        returns once it has ended.  A task that has not started yet never runs; killing one
        that has ended does nothing."""
        if self._done:
            return
        if getcurrent() is self._greenlet:
            raise GreenletExit
        self._check_thread()
        if self._function is not None:
            # Not started: the hub still switches to its greenlet once, which returns at once.
            self._function = self._args = self._kwargs = None
            self._finish(None, None)
            return
        self._hub.kill(self._greenlet)
        self._wait(None)

    # -- waiting --------------------------------------------------------------------------------

    def _check_thread(self):
        if existing_hub() is not self._hub:
            raise RuntimeError("a task is joined or killed from the thread that spawned it "
                               "(its hub's thread)")

    def _wait(self, timeout):
        """Park the calling greenlet until the task is done; TimeoutError past ``timeout``."""
        current = getcurrent()
        if current is self._greenlet:
            raise RuntimeError("a task cannot join itself")
        self._check_thread()
        hub = self._hub
        if timeout is not None and not timeout > 0:
            raise TimeoutError("the task is still running")
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(current)
        # The hub's park() has no deadline: a timer greenlet wakes the joiner when it is due.
        timer = None if timeout is None else hub.spawn(self._expire, current, timeout)
        try:
            while not self._done:
                if hub.park() is _TIMED_OUT and not self._done:
                    raise TimeoutError("the task is still running after %g s" % timeout)
        finally:
            if self._waiters is not None and current in self._waiters:
                self._waiters.remove(current)
            if timer is not None and not timer.dead:
                hub.kill(timer)

    def _expire(self, waiter, seconds):
        self._hub.sleep(seconds)
        waiters = self._waiters
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            self._hub.wake(waiter, _TIMED_OUT)

    # -- an outcome nobody asked for ------------------------------------------------------------

    def __del__(self):
        if self._exception is not None and not self._retrieved:
            _report_unjoined(self)


def _report_unjoined(task):
    """An exception no join() returned, reported once (as an unhandled one in a thread is)."""
    stderr = sys.stderr
    if stderr is None:
        return
    exception = task._exception
    try:
        print("Exception in %r, which was never joined:" % (task,), file=stderr)
        traceback.print_exception(type(exception), exception, exception.__traceback__,
                                  file=stderr)
        stderr.flush()
    except Exception:
        pass  # at interpreter exit, say
