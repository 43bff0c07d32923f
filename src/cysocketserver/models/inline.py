"""Requests handled in the serving thread, one after the other: the plain servers' model."""
import socket
import time

from ..core.policy import BATCH

__all__ = ["Inline"]


class Inline:
    name = "inline"
    batch = BATCH
    request_class = socket.socket
    cooperative = False
    # can_take() is always true: the loop need not ask.
    always_takes = True
    # The server holds each connection until it ends (the guards can act on it).
    keeps_connections = True

    def __init__(self, server):
        self.server = server

    def attach(self, loop):
        pass

    def can_take(self):
        return True

    def start(self, target, request, client_address):
        target(request, client_address)

    def nap(self, seconds):
        """Wait while the handlers run (server_close()'s drain)."""
        time.sleep(seconds)

    def stats(self):
        """The model's own figures for ``stats()``."""
        return {}

    def close(self, block):
        pass
