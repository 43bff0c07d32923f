"""A new thread per request: ThreadingMixIn's model."""
import threading

from .base import Model

__all__ = ["ThreadPerRequest", "Threads", "NoThreads"]


class Threads(list):
    """The non-daemon request threads that server_close() must join.

    Finished threads are dropped whenever one is added, so a long-running server does not keep
    every thread it ever started (CPython #37193).
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


class NoThreads:
    """Stands in for Threads when server_close() need not wait for anything."""

    def append(self, thread):
        pass

    def join(self):
        pass

    def __len__(self):
        return 0


class ThreadPerRequest(Model):
    name = "threads"
    context_hook = "process_request_thread"

    def start(self, target, request, client_address):
        server = self.server
        if server.block_on_close and "_threads" not in vars(server):
            # Per instance, created on first use, as the stdlib does: server_close() joins them.
            server._threads = Threads()
        thread = threading.Thread(target=target, args=(request, client_address))
        thread.daemon = server.daemon_threads
        server._threads.append(thread)
        entry = server._connection_registry.get(request)
        if entry is not None:
            entry.holder = thread
        thread.start()

    def stats(self):
        return {"threads_running": sum(
            1 for entry in self.server._connection_registry if entry.holder is not None)}

    def close(self, block):
        self.server._threads.join()
