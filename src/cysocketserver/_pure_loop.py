"""The serve loop in pure Python: the same seam as the compiled ``_loop``, for where no compiler is.

The loop waits on the listening descriptor and a wake-up pipe, so that shutdown() returns at
once whatever poll_interval is, and it stops watching the listener for a while when accept()
fails for want of descriptors instead of spinning on it.
"""
import errno
import os
import selectors
import threading
from time import monotonic

__all__ = ["ServeLoop", "dispatch"]

# accept()/recvfrom() failures that mean "out of resources": retrying at once cannot help.
RESOURCE_ERRNOS = frozenset(
    code for code in (getattr(errno, name, None) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"))
    if code is not None
)
# How long to leave the listener alone after running out, doubling up to the maximum.
PAUSE_FIRST = 0.01
PAUSE_MAX = 0.5

LISTENER_READY = 1
WOKEN = 2


def dispatch(server, request, client_address):
    """Hand one request to the server's hooks in the stdlib's order and with its error handling.

    verify_request's own exceptions propagate; process_request's go to handle_error, except
    those that are not an Exception (KeyboardInterrupt, SystemExit), which propagate once the
    request is shut down.
    """
    if not server.verify_request(request, client_address):
        server.shutdown_request(request)
        return
    try:
        server.process_request(request, client_address)
    except Exception:
        server.handle_error(request, client_address)
        server.shutdown_request(request)
    except BaseException:
        server.shutdown_request(request)
        raise


class _Poller:
    """Waits for the listener (while it is not paused) and for a wake-up."""

    def __init__(self):
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, WOKEN)
        self.listen_fd = -1
        self._watching = False

    def set_listener(self, fd):
        if fd == self.listen_fd:
            return
        self.unwatch()
        self.listen_fd = fd
        self.watch()

    def watch(self):
        if not self._watching and self.listen_fd >= 0:
            self._selector.register(self.listen_fd, selectors.EVENT_READ, LISTENER_READY)
            self._watching = True

    def unwatch(self):
        if self._watching:
            try:
                self._selector.unregister(self.listen_fd)
            except (KeyError, ValueError, OSError):
                pass
            self._watching = False

    def wait(self, timeout):
        flags = 0
        for key, _events in self._selector.select(timeout):
            flags |= key.data
        if flags & WOKEN:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        return flags

    def wake(self):
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            # Full pipe: a wake-up is pending already. Closed: nobody to wake.
            pass

    def close(self):
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1


class ServeLoop:
    """Runs a server's serve_forever()/handle_request() through its documented hooks."""

    def __init__(self):
        self._shutdown_requested = False
        self._is_shut_down = threading.Event()
        self._poller = None
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._pause = PAUSE_FIRST

    def _attach(self, server):
        with self._lock:
            if self._poller is None:
                self._poller = _Poller()
            poller = self._poller
        fd = server.fileno()
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        poller.set_listener(fd)
        return poller

    def serve_forever(self, server, poll_interval):
        self._is_shut_down.clear()
        try:
            poller = self._attach(server)
            while not self._shutdown_requested:
                ready = poller.wait(self._wait_time(poller, poll_interval))
                if self._shutdown_requested:
                    break
                if ready & LISTENER_READY:
                    server._handle_request_noblock()
                server.service_actions()
        finally:
            self._shutdown_requested = False
            self._is_shut_down.set()

    def shutdown(self):
        self.request_shutdown(True)
        self._is_shut_down.wait()

    @property
    def shutdown_requested(self):
        return self._shutdown_requested

    def request_shutdown(self, requested=True):
        """Ask the running serve_forever() to return, without waiting for it."""
        self._shutdown_requested = requested
        poller = self._poller
        if requested and poller is not None:
            poller.wake()

    def handle_request(self, server):
        timeout = server.socket.gettimeout()
        if timeout is None:
            timeout = server.timeout
        elif server.timeout is not None:
            timeout = min(timeout, server.timeout)
        deadline = None if timeout is None else monotonic() + timeout
        poller = self._attach(server)
        while True:
            ready = poller.wait(self._wait_time(poller, timeout))
            if ready & LISTENER_READY:
                return server._handle_request_noblock()
            if deadline is not None:
                timeout = deadline - monotonic()
                if timeout < 0:
                    return server.handle_timeout()

    def handle_ready(self, server):
        """Take one request off the ready listener and dispatch it, as the stdlib does."""
        try:
            request, client_address = server.get_request()
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                self._pause_listener()
            return
        self._pause = PAUSE_FIRST
        dispatch(server, request, client_address)

    def _pause_listener(self):
        poller = self._poller
        if poller is not None:
            poller.unwatch()
        self._resume_at = monotonic() + self._pause
        self._pause = min(self._pause * 2, PAUSE_MAX)

    def _wait_time(self, poller, timeout):
        """The wait's timeout, shortened to resume a paused listener on time."""
        if not self._resume_at:
            return timeout
        left = self._resume_at - monotonic()
        if left <= 0:
            self._resume_at = 0.0
            poller.watch()
            return timeout
        return left if timeout is None else min(timeout, left)

    def close(self):
        with self._lock:
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.close()
