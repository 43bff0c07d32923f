"""A greenlet per request, all on the hub of the thread that serves: GreenletMixIn's model.

Also the server's greenlet bookkeeping (``GreenletState``), which this model fills as handlers
start and GreenletMixIn reads to shut down and drain; ``greenlet_state(server)`` is the one
way to reach it.
"""
import threading
import time

from ..core.state import state_of
from ..green.hub import get_hub
from ..green.socket import GreenSocket, as_green_socket
from .base import Model

__all__ = ["Greenlets", "GreenletState", "greenlet_state"]


class GreenletState:
    """A greenlet server's bookkeeping, kept off the server's documented attributes."""

    def __init__(self):
        self.hub = None
        self.serving = None             # the greenlet running serve_forever()
        self.is_shut_down = threading.Event()
        self.draining = False
        self.handlers = {}              # live handler greenlet -> its request
        self.idle = threading.Event()   # set while there are none
        self.idle.set()
        self.idle_waiters = []          # greenlets on the hub waiting for that
        self.shutdown_waiters = []      # handlers that called shutdown()


def greenlet_state(server):
    """The server's GreenletState (``ServerState.greenlet``), made on first use; a forked
    prefork worker starts without one."""
    state = state_of(server)
    if state.greenlet is None:
        state.greenlet = GreenletState()
    return state.greenlet


class Greenlets(Model):
    """Each request's handler in a new greenlet on the serving thread's hub; the accepted
    socket is taken over by a GreenSocket, so that its blocking calls park the greenlet."""

    name = "greenlets"
    context_hook = "process_request_greenlet"
    request_class = GreenSocket
    cooperative = True

    def start(self, target, request, client_address):
        server = self.server
        st = greenlet_state(server)
        hub = get_hub()
        st.hub = hub
        registry = server._connection_registry
        cooperative = as_green_socket(request)
        if cooperative is not request:
            entry = registry.replace(request, cooperative)
            request = cooperative
        else:
            entry = registry.get(request)
        glet = hub.spawn(target, request, client_address)
        # For the hub's block warnings.
        glet.cysocketserver_label = (server.RequestHandlerClass, client_address)
        if not st.handlers:
            st.idle.clear()  # an Event's lock: only when the first handler starts
        st.handlers[glet] = request
        if entry is not None:
            entry.holder = glet
            if isinstance(request, GreenSocket):
                request._meter = entry.meter

    def nap(self, seconds):
        """In the hub's thread the handlers must run meanwhile: sleep on the hub."""
        hub = greenlet_state(self.server).hub
        if hub is not None and hub.thread_ident == threading.get_ident():
            hub.sleep(seconds)
        else:
            time.sleep(seconds)

    def stats(self):
        return {"greenlets_running": len(greenlet_state(self.server).handlers)}

    def close(self, block):
        pass  # GreenletMixIn.server_close() drains or kills its greenlets itself
