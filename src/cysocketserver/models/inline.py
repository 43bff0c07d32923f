"""Requests handled in the serving thread, one after the other: the plain servers' model."""
import socket

from ..core.policy import BATCH

__all__ = ["Inline"]


class Inline:
    batch = BATCH
    request_class = socket.socket
    cooperative = False
    # can_take() is always true: the loop need not ask.
    always_takes = True

    def __init__(self, server):
        self.server = server

    def attach(self, loop):
        pass

    def can_take(self):
        return True

    def start(self, target, request, client_address):
        target(request, client_address)

    def close(self, block):
        pass
