"""``to_thread()``: a blocking call run in a worker thread while the hub serves the others.

The workers are one pool for the whole process, at most ``TO_THREAD_MAX_THREADS`` threads.
"""
import os
import threading

from greenlet import getcurrent

from .._hubcommon import env_int
from ..threadpool import WorkerPool
from .hub import existing_hub

__all__ = ["TO_THREAD_ENV", "TO_THREAD_MAX_THREADS", "to_thread"]

TO_THREAD_ENV = "CYSOCKETSERVER_TO_THREAD_MAX_THREADS"


def _default_to_thread_threads():
    value = env_int(TO_THREAD_ENV, 1, None)
    if value is not None:
        return value
    # concurrent.futures' (and so asyncio's) default: the calls mostly wait on I/O, so more
    # threads than cores pay off, but each costs a stack and its share of the GIL.
    return min(32, (os.cpu_count() or 1) + 4)


# The most threads to_thread() runs its calls on at once (more calls wait their turn, in
# order).  Read at each call: it may be changed at any time (cysocketserver.greenlets passes
# an assignment made there on to this module).
TO_THREAD_MAX_THREADS = _default_to_thread_threads()
_to_thread_pool = None
_to_thread_pool_lock = threading.Lock()


def _to_thread_workers():
    global _to_thread_pool
    pool = _to_thread_pool
    if pool is None:
        with _to_thread_pool_lock:
            pool = _to_thread_pool
            if pool is None:
                pool = _to_thread_pool = WorkerPool(TO_THREAD_MAX_THREADS,
                                                    name="cysocketserver-to_thread")
    if pool.max_threads != TO_THREAD_MAX_THREADS:
        pool.max_threads = TO_THREAD_MAX_THREADS
    return pool


def to_thread(function, /, *args, **kwargs):
    """Call a blocking ``function(*args, **kwargs)`` in a worker thread and return its result.

    The calling greenlet waits cooperatively: the hub keeps serving the others, and the worker
    wakes it through the hub's wake-up descriptor.  The workers are a pool of at most
    ``TO_THREAD_MAX_THREADS`` threads; further calls wait for a free one, in order.  In a
    thread that runs no hub (a threaded server's handler, say) there is nothing to keep
    serving: the function is simply called there, and no hub is made.
    """
    hub = existing_hub()
    if hub is None:
        return function(*args, **kwargs)
    me = getcurrent()
    outcome = []

    def work():
        try:
            outcome.append((True, function(*args, **kwargs)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            hub.wake_threadsafe(me)

    _to_thread_workers().submit(work)
    while not outcome:
        hub.park()
    ok, value = outcome.pop()
    if ok:
        return value
    try:
        raise value
    finally:
        del value
