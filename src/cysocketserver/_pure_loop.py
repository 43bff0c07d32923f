"""The serve loop in pure Python: the same seam as the compiled ``_loop`` (``core.seam.ServeLoop``).

Mechanism only: it waits on the listener and a wake-up, takes batches of requests off the
listener and hands each to ``plan.admit``; what to call and how often is in the plan
(``core.plan``).  The listener is left alone while the concurrency model can take nothing
(``pause_accepting``) and for the back-off pause after accept() ran out of descriptors.
"""
import errno
import os
import selectors
import threading
from time import monotonic

from ._pure_epoll import new_selector
from ._loopcommon import INTAKE_ACCEPT, INTAKE_RECVFROM, set_nodelay

__all__ = ["ServeLoop", "Poller"]

LISTENER_READY = 1
WOKEN = 2
# accept() failures that concern one client only: the next one may be waiting.
_CLIENT_GAVE_UP = frozenset(code for code in (errno.ECONNABORTED, getattr(errno, "EPROTO", None))
                            if code is not None)


class Poller:
    """Waits for the listener (while it is watched) and for a wake-up from any thread.

    A listener that several processes share may be watched exclusively (EPOLLEXCLUSIVE, on
    Linux): of the processes waiting for it, the kernel wakes one.  watch() adds the listener
    to the set and unwatch() removes it, the only changes the flag allows (``_pure_epoll``)."""

    def __init__(self):
        self._selector = new_selector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, WOKEN)
        self.listen_fd = -1
        self._exclusive = False
        self._watching = False

    def set_listener(self, fd, exclusive=False):
        if fd == self.listen_fd and exclusive == self._exclusive:
            return
        self.unwatch()
        self.listen_fd = fd
        self._exclusive = exclusive
        self.watch()

    def watch(self):
        if not self._watching and self.listen_fd >= 0:
            self._selector.register(self.listen_fd, selectors.EVENT_READ, LISTENER_READY,
                                    exclusive=self._exclusive)
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
        except OSError:
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
    def __init__(self, waiter=None):
        self._waiter = waiter
        self._stop = False
        self._is_shut_down = threading.Event()
        self._lock = threading.Lock()
        self._gated = False
        self._resume_at = 0.0
        self._backing_off = False

    # -- the seam ---------------------------------------------------------------------------

    def serve_forever(self, plan, poll_interval):
        self._is_shut_down.clear()
        try:
            waiter = self._attach(plan)
            after_wait = plan.after_wait
            while not self._stop:
                ready = waiter.wait(self._wait_time(waiter, poll_interval, True))
                if self._stop:
                    break
                if ready & LISTENER_READY and not self._gated and not self._resume_at:
                    self._take(plan)
                if after_wait is not None:
                    after_wait()
        finally:
            self._stop = False
            self._is_shut_down.set()

    def handle_request(self, plan, timeout):
        deadline = None if timeout is None else monotonic() + timeout
        waiter = self._attach(plan)
        while True:
            ready = waiter.wait(self._wait_time(waiter, timeout, False))
            if ready & LISTENER_READY and not self._resume_at:
                return plan.take_one()
            if deadline is not None:
                timeout = deadline - monotonic()
                if timeout < 0:
                    return plan.handle_timeout()

    def shutdown(self):
        self.request_shutdown(True)
        self._is_shut_down.wait()

    @property
    def shutdown_requested(self):
        return self._stop

    def request_shutdown(self, requested=True):
        self._stop = requested
        waiter = self._waiter
        if requested and waiter is not None:
            waiter.wake()

    def pause_accepting(self):
        self._gated = True

    def resume_accepting(self):
        if self._gated:
            self._gated = False
            waiter = self._waiter
            if waiter is not None:
                waiter.wake()

    def back_off(self, seconds):
        self._resume_at = monotonic() + seconds
        self._backing_off = True

    def close(self):
        with self._lock:
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()

    # -- inside the loop --------------------------------------------------------------------

    def _attach(self, plan):
        with self._lock:
            if self._waiter is None:
                self._waiter = Poller()
            waiter = self._waiter
        waiter.set_listener(plan.fd, plan.exclusive)
        return waiter

    def _wait_time(self, waiter, timeout, gated):
        """Watch the listener or not, and shorten the wait to end a back-off pause on time."""
        if self._resume_at:
            left = self._resume_at - monotonic()
            if left > 0:
                waiter.unwatch()
                return left if timeout is None else min(timeout, left)
            self._resume_at = 0.0
        if gated and self._gated:
            waiter.unwatch()
        else:
            waiter.watch()
        return timeout

    def _take(self, plan):
        # Woken by one party (a free thread) while the connection limit still says no: take
        # nothing, and stop watching until there is room.
        room = plan.room
        if room is not None and not self._still_taking(room):
            return
        intake = plan.intake
        if intake == INTAKE_ACCEPT:
            self._accept_batch(plan)
        elif intake == INTAKE_RECVFROM:
            self._recvfrom_batch(plan)
        else:
            plan.take_one()
            can_take = plan.can_take
            if can_take is not None:
                self._still_taking(can_take)

    def _accept_batch(self, plan):
        listener = plan.listener
        admit = plan.admit
        can_take = plan.can_take
        make = plan.request_class
        nodelay = plan.nodelay
        for _ in range(plan.batch):
            try:
                fd, client_address = listener._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                pause = plan.intake_error(exc.errno)
                if exc.errno in _CLIENT_GAVE_UP:
                    continue
                if pause:
                    self.back_off(pause)
                # Anything else the stdlib would swallow as well.
                return
            if self._backing_off:
                self._backing_off = False
                plan.backoff.reset()
            request = make(plan.family, plan.type, plan.proto, fd)
            if nodelay:
                set_nodelay(request)
            admit(request, client_address)
            if self._stop or (can_take is not None and not self._still_taking(can_take)):
                return

    def _recvfrom_batch(self, plan):
        listener = plan.listener
        admit = plan.admit
        size = plan.max_packet
        for _ in range(plan.batch):
            try:
                data, client_address = listener.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                pause = plan.intake_error(exc.errno)
                if pause:
                    self.back_off(pause)
                return
            admit((data, listener), client_address)
            if self._stop:
                return

    def _still_taking(self, can_take):
        """After a request: if the model can take no more, stop watching the listener until it
        calls resume_accepting() (checked again after pausing, so a thread freed in between is
        not missed)."""
        if can_take():
            return True
        self.pause_accepting()
        if can_take():
            self._gated = False
            return True
        return False
