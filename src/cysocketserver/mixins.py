"""Concurrency mix-ins: a process, a thread or a pooled thread per request, and the ready-made
servers that combine them with the server classes, as the stdlib names them.

Each is the public face of one concurrency model (``models``): it keeps the stdlib's documented
attributes and hooks, and its process_request() hands the request to the model.
"""
import os
import socket

from .core.admission import serve_request
from .core.hooks import in_request_context
from .core.state import state_of
from .models.pool import PooledThreads
from .models.threads import NoThreads, ThreadPerRequest
from .servers import TCPServer, UDPServer

__all__ = ["ThreadingMixIn", "ThreadPoolMixIn",
           "ThreadingTCPServer", "ThreadingUDPServer", "ThreadPoolTCPServer", "ThreadPoolUDPServer"]
if hasattr(os, "fork"):
    __all__ += ["ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer"]
if hasattr(socket, "AF_UNIX"):
    __all__ += ["ThreadingUnixStreamServer", "ThreadingUnixDatagramServer",
                "ThreadPoolUnixStreamServer", "ThreadPoolUnixDatagramServer"]
    if hasattr(os, "fork"):
        __all__ += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]


if hasattr(os, "fork"):
    from .models.forks import ForkPerRequest

    class ForkingMixIn:
        """Handle each request in a child process.

        ``max_children`` (default 40) bounds the children alive at once; ``block_on_close``
        makes server_close() wait for them; ``timeout`` (300 s) is handle_request()'s.  The
        connection guards (max_connections, idle_timeout, ...) are refused: the child owns
        each connection.
        """

        timeout = 300
        active_children = None
        max_children = 40
        block_on_close = True
        _model_class = ForkPerRequest

        def collect_children(self, *, blocking=False):
            """Reap finished children; first wait while there are max_children or more."""
            children = self.active_children
            if children is None:
                return
            while len(children) >= self.max_children:
                try:
                    pid, _status = os.waitpid(-1, 0)
                except ChildProcessError:
                    # None left at all: our bookkeeping is stale.
                    children.clear()
                except OSError:
                    break
                else:
                    children.discard(pid)
            flags = 0 if blocking else os.WNOHANG
            for pid in list(children):
                try:
                    reaped, _status = os.waitpid(pid, flags)
                except ChildProcessError:
                    children.discard(pid)
                except OSError:
                    pass
                else:
                    # With WNOHANG a still-running child reports pid 0.
                    children.discard(reaped)

        def handle_timeout(self):
            """Reap finished children."""
            self.collect_children()

        def service_actions(self):
            """Reap finished children (after each wake-up of serve_forever())."""
            self.collect_children()

        def process_request(self, request, client_address):
            """Fork a child that handles the request and exits."""
            self._model.start(None, request, client_address)

        def server_close(self):
            """Close the server, then wait for the children if block_on_close."""
            super().server_close()
            self._model.close(self.block_on_close)


class ThreadingMixIn:
    """Handle each request in a new thread.

    ``daemon_threads``: the threads do not hold up the interpreter's exit; ``block_on_close``
    (default True): server_close() waits for the non-daemon threads.
    """

    daemon_threads = False
    block_on_close = True
    _threads = NoThreads()
    _model_class = ThreadPerRequest

    @in_request_context
    def process_request_thread(self, request, client_address):
        """What each request's thread runs: finish_request(), handle_error() on an exception,
        shutdown_request() always."""
        serve_request(self, request, client_address)

    @in_request_context
    def process_request(self, request, client_address):
        """Start a thread that runs process_request_thread()."""
        self._model.start(self.process_request_thread, request, client_address)

    def server_close(self):
        """Close the server (draining first with a drain_timeout), then wait for the request
        threads if block_on_close."""
        super().server_close()
        if state_of(self).model is not None:  # nothing to wait for if no request ever came
            self._model.close(self.block_on_close)


class ThreadPoolMixIn(ThreadingMixIn):
    """Handle each request on a bounded set of reusable threads.

    A connection holds its thread for its whole life, as with ThreadingMixIn.  When all
    ``max_threads`` are busy the server stops accepting until one is free (the kernel's listen
    backlog holds the waiting clients); nothing queues inside the process.  Threads idle for
    ``pool_idle_timeout`` seconds exit.  ``daemon_threads`` and ``block_on_close`` mean what
    they mean for ThreadingMixIn, for server_close(); the pool's threads themselves never hold
    up the interpreter's exit.  Unlike a thread per request, thread-local data and
    ``threading.get_native_id()`` carry over from one request to the next on a pooled thread.

    ``max_threads`` (default 64): the most requests handled at once -- enough for a few dozen
    concurrent keep-alive clients; an idle thread costs a stack's address space but little
    memory.  Raise it to the number of connections you expect to be open at once.
    ``pool_idle_timeout`` (default 10 s): how long a thread waits for work before it exits.
    """

    max_threads = 64
    pool_idle_timeout = 10.0
    _model_class = PooledThreads

    @in_request_context
    def process_request(self, request, client_address):
        """Hand the request to a free pooled thread, which runs process_request_thread().
        (While every thread is busy the serving loop does not accept, so there is one.)"""
        self._model.start(self.process_request_thread, request, client_address)


# -- the stdlib's combinations ------------------------------------------------------------------

class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    """UDPServer that handles each datagram in a new thread."""


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    """TCPServer that handles each connection in a new thread."""


class ThreadPoolUDPServer(ThreadPoolMixIn, UDPServer):
    """UDPServer whose requests run on a bounded pool of reusable threads."""


class ThreadPoolTCPServer(ThreadPoolMixIn, TCPServer):
    """TCPServer whose connections run on a bounded pool of reusable threads."""


if hasattr(os, "fork"):

    class ForkingUDPServer(ForkingMixIn, UDPServer):
        """UDPServer that handles each datagram in a child process."""

    class ForkingTCPServer(ForkingMixIn, TCPServer):
        """TCPServer that handles each connection in a child process."""


if hasattr(socket, "AF_UNIX"):
    from .servers import UnixDatagramServer, UnixStreamServer

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
        """UnixStreamServer that handles each connection in a new thread."""

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
        """UnixDatagramServer that handles each datagram in a new thread."""

    class ThreadPoolUnixStreamServer(ThreadPoolMixIn, UnixStreamServer):
        """UnixStreamServer whose connections run on a bounded pool of reusable threads."""

    class ThreadPoolUnixDatagramServer(ThreadPoolMixIn, UnixDatagramServer):
        """UnixDatagramServer whose requests run on a bounded pool of reusable threads."""

    if hasattr(os, "fork"):

        class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
            """UnixStreamServer that handles each connection in a child process."""

        class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
            """UnixDatagramServer that handles each datagram in a child process."""
