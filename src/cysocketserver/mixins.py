"""Concurrency mix-ins: a process or a thread per request, as the stdlib documents them."""
import os
import threading

__all__ = ["ThreadingMixIn"]
if hasattr(os, "fork"):
    __all__ += ["ForkingMixIn"]


if hasattr(os, "fork"):

    class ForkingMixIn:
        """Handle each request in a child process."""

        timeout = 300
        active_children = None
        max_children = 40
        block_on_close = True

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
            self.collect_children()

        def service_actions(self):
            self.collect_children()

        def process_request(self, request, client_address):
            pid = os.fork()
            if pid:
                if self.active_children is None:
                    self.active_children = set()
                self.active_children.add(pid)
                self.close_request(request)
                return
            # In the child: handle the one request, then leave without running parent cleanup.
            exit_status = 1
            try:
                self.finish_request(request, client_address)
                exit_status = 0
            except Exception:
                self.handle_error(request, client_address)
            finally:
                try:
                    self.shutdown_request(request)
                finally:
                    os._exit(exit_status)

        def server_close(self):
            super().server_close()
            self.collect_children(blocking=self.block_on_close)


class _Threads(list):
    """The non-daemon request threads that server_close() must join.

    Finished threads are dropped whenever one is added, so a long-running server
    does not keep every thread it ever started (CPython #37193).
    """

    def append(self, thread):
        self.reap()
        if not thread.daemon:
            super().append(thread)

    def reap(self):
        self[:] = [thread for thread in self if thread.is_alive()]

    def pop_all(self):
        taken = self[:]
        del self[:]
        return taken

    def join(self):
        for thread in self.pop_all():
            thread.join()


class _NoThreads:
    """Stands in for _Threads when server_close() need not wait for anything."""

    def append(self, thread):
        pass

    def join(self):
        pass


class ThreadingMixIn:
    """Handle each request in a new thread."""

    daemon_threads = False
    block_on_close = True
    _threads = _NoThreads()

    def process_request_thread(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request, client_address):
        if self.block_on_close:
            # Per instance, created on first use, so that server_close() can join them.
            if "_threads" not in vars(self):
                self._threads = _Threads()
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address))
        thread.daemon = self.daemon_threads
        self._threads.append(thread)
        thread.start()

    def server_close(self):
        super().server_close()
        self._threads.join()
