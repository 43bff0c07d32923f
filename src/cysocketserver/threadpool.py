"""A bounded pool of reusable worker threads (placeholder until the hub work lands)."""
import collections
import threading

__all__ = ["WorkerPool"]


class WorkerPool:
    def __init__(self, max_threads, *, idle_timeout=10.0, daemon=True, name="cysocketserver-worker"):
        self.max_threads = max_threads
        self.idle_timeout = idle_timeout
        self.daemon = daemon
        self.name = name
        self.on_free = None
        self._lock = threading.Lock()
        self._work = collections.deque()
        self._cond = threading.Condition(self._lock)
        self._threads = set()
        self._idle = 0
        self._closed = False

    @property
    def busy(self):
        return len(self._threads) - self._idle

    @property
    def idle(self):
        return self._idle

    @property
    def size(self):
        return len(self._threads)

    def try_submit(self, fn, *args):
        with self._lock:
            if self._closed:
                raise RuntimeError("pool is shut down")
            if self._idle > len(self._work):
                self._work.append((fn, args))
                self._cond.notify()
                return True
            if len(self._threads) < self.max_threads:
                self._work.append((fn, args))
                self._start()
                return True
            return False

    def submit(self, fn, *args):
        with self._lock:
            if self._closed:
                raise RuntimeError("pool is shut down")
            self._work.append((fn, args))
            if self._idle >= len(self._work):
                self._cond.notify()
            elif len(self._threads) < self.max_threads:
                self._start()

    def _start(self):
        thread = threading.Thread(target=self._worker, name="%s-%d" % (self.name, len(self._threads)),
                                  daemon=self.daemon)
        self._threads.add(thread)
        thread.start()

    def _worker(self):
        me = threading.current_thread()
        while True:
            with self._lock:
                while not self._work:
                    if self._closed:
                        self._threads.discard(me)
                        self._cond.notify_all()
                        return
                    self._idle += 1
                    got = self._cond.wait(self.idle_timeout)
                    self._idle -= 1
                    if not got and not self._work:
                        self._threads.discard(me)
                        self._cond.notify_all()
                        return
                fn, args = self._work.popleft()
            try:
                fn(*args)
            except BaseException:
                pass
            finally:
                fn = args = None
            on_free = self.on_free
            if on_free is not None:
                try:
                    on_free()
                except Exception:
                    pass

    def shutdown(self, wait=True, timeout=None):
        with self._lock:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join(timeout)
