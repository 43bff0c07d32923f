"""A bounded set of reusable threads: ThreadPoolMixIn's model.

A connection holds its thread for its whole life, as in the socketserver model.  When every
thread is busy the model says it can take no more; the loop stops accepting until a thread is
free again, so nothing waits in an unbounded queue: the kernel's backlog holds the clients.
"""
import sys
import threading

from ..core.settings import checked, positive_int, seconds
from ..threadpool import WorkerPool
from .base import Model

__all__ = ["PooledThreads"]


class PooledThreads(Model):
    name = "pool"
    context_hook = "process_request_thread"
    always_takes = False

    def __init__(self, server):
        super().__init__(server)
        max_threads = checked(server, "max_threads", positive_int)
        self.pool = WorkerPool(
            max_threads,
            idle_timeout=checked(server, "pool_idle_timeout", seconds),
            # Never hold up the interpreter's exit; server_close() joins when it must.
            daemon=True,
            name="%s-handler" % type(server).__name__,
        )
        self.loop = None

    def attach(self, loop):
        self.loop = loop
        self.pool.on_free = loop.resume_accepting

    def can_take(self):
        pool = self.pool
        return pool.idle > 0 or pool.size < pool.max_threads

    def start(self, target, request, client_address):
        if not self.pool.try_submit(self._run, target, request, client_address):
            # Only handle_request() (which takes one request whatever the model says) or a
            # process_request() called by hand gets here: wait for the next free thread.
            self.pool.submit(self._run, target, request, client_address)

    def _run(self, target, request, client_address):
        entry = self.server._connection_registry.get(request)
        if entry is not None:
            entry.holder = threading.current_thread()
        try:
            target(request, client_address)
        except BaseException:
            # What escapes process_request_thread (SystemExit, KeyboardInterrupt) is reported as
            # an unhandled exception in a thread of its own would be; the pooled thread goes on.
            threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))

    def stats(self):
        pool = self.pool
        idle = pool.idle
        return {"pool_threads_busy": pool.size - idle, "pool_threads_idle": idle,
                "pool_threads_max": pool.max_threads}

    def close(self, block):
        server = self.server
        self.pool.shutdown(wait=block and not server.daemon_threads)
