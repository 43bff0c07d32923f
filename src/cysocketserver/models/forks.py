"""A child process per request: ForkingMixIn's model."""
import os

from ..core.admission import admit_in_child, release
from .base import Model

__all__ = ["ForkPerRequest"]


class ForkPerRequest(Model):
    name = "forks"
    # The child process owns each connection: the parent forgets it at once, so the guards that
    # act on live connections cannot apply (core.guards refuses them).
    keeps_connections = False
    # One request per wake-up, as in the stdlib: ForkingMixIn enforces max_children in
    # service_actions(), which must run between every two requests.
    batch = 1
    # The child admits its request: with TLS, the handshake and then verify_request() run
    # there, off the serving loop (core.admission.admit_in_child).
    admits_in_child = True

    def start(self, target, request, client_address):
        # ``target`` is unused: the child runs ForkingMixIn's own order and exit status.
        server = self.server
        pid = os.fork()
        if pid:
            if server.active_children is None:
                server.active_children = set()
            server.active_children.add(pid)
            # The child owns the connection now.
            server.close_request(request)
            server._connection_registry.discard(request)
            return
        # In the child: handle the one request, then leave without running the parent's cleanup.
        exit_status = 1
        try:
            request, admitted = admit_in_child(server, request, client_address)
            if admitted:
                server.finish_request(request, client_address)
            exit_status = 0
        except Exception:
            server.handle_error(request, client_address)
        finally:
            try:
                release(server, request)
            finally:
                os._exit(exit_status)

    def stats(self):
        return {"children_active": len(self.server.active_children or ())}

    def close(self, block):
        self.server.collect_children(blocking=block)
