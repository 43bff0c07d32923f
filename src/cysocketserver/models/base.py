"""What every concurrency model has: the defaults the others override (``core.seam.Model``)."""
import socket
import time

from ..core.plan import BATCH

__all__ = ["Model"]


class Model:
    """Runs admitted requests somewhere, and says whether it can take another now."""

    name = "model"
    batch = BATCH
    request_class = socket.socket
    # The listener is waited on through the thread's hub (the greenlet servers).
    cooperative = False
    # can_take() is always true: the loop need not ask.
    always_takes = True
    # The server holds each connection until it ends (the guards can act on it).
    keeps_connections = True
    # The server hook the model runs in each request's own context (a thread, a greenlet),
    # None where requests run in the serving thread or a child process: the PROXY header is
    # read in that context when both it and process_request() are the package's own.
    context_hook: "str | None" = None
    # A model whose child process admits each request itself (ForkingMixIn's): with TLS, the
    # handshake and then verify_request() run there (core.admission.admit_in_child).
    admits_in_child = False

    def __init__(self, server):
        self.server = server

    def attach(self, loop):
        """The loop that serves through this model (to resume accepting when room frees)."""

    def can_take(self):
        return True

    def start(self, target, request, client_address):
        """Run ``target(request, client_address)``: here, in the serving thread."""
        target(request, client_address)

    def nap(self, seconds):
        """Wait while the handlers run (server_close()'s drain)."""
        time.sleep(seconds)

    def stats(self):
        """The model's own figures for ``stats()``."""
        return {}

    def close(self, block):
        """server_close(): wait for running requests when ``block``."""
