"""The server classes: the stdlib's documented interface, with the loop delegated to the engine."""
import socket
import sys
import traceback

from ._engine import ServeLoop
from ._nodelay import set_nodelay, wants_nodelay

__all__ = ["BaseServer", "TCPServer", "UDPServer"]


def _loop_default(hook):
    """Mark a hook as this package's own, so the loop may run its work natively.

    A subclass that overrides the hook gets its override called instead.
    """
    hook._cysocketserver_default = True
    return hook


def _loop_noop(hook):
    """Mark a hook of this package's that does nothing, so the loop may skip calling it."""
    hook._cysocketserver_noop = True
    return _loop_default(hook)
if hasattr(socket, "AF_UNIX"):
    __all__ += ["UnixStreamServer", "UnixDatagramServer"]


class BaseServer:
    """Owns no socket itself: subclasses say how requests arrive.

    serve_forever(), handle_request() and shutdown() run on the engine's ServeLoop, which
    calls back into the documented hooks below in the stdlib's order.
    """

    timeout = None

    def __init__(self, server_address, RequestHandlerClass):
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        self._loop = ServeLoop()

    def server_activate(self):
        pass

    def serve_forever(self, poll_interval=0.5):
        self._loop.serve_forever(self, poll_interval)

    def shutdown(self):
        """Stop serve_forever() and wait until it has returned.

        Must be called from another thread than serve_forever's, or it deadlocks.
        """
        self._loop.shutdown()

    @_loop_default
    def service_actions(self):
        pass

    def handle_request(self):
        """Wait for and handle one request, honouring self.timeout and the socket's timeout."""
        return self._loop.handle_request(self)

    # Code in the wild stops a server from its own handler by setting the stdlib's private
    # flag; keep that working.
    @property
    def __shutdown_request(self):
        return self._loop.shutdown_requested

    @__shutdown_request.setter
    def __shutdown_request(self, requested):
        self._loop.request_shutdown(requested)

    @_loop_default
    def _handle_request_noblock(self):
        # Kept for subclasses that call or override it; the loop honours an override.
        self._loop.handle_ready(self)

    def handle_timeout(self):
        pass

    @_loop_default
    def verify_request(self, request, client_address):
        return True

    @_loop_default
    def process_request(self, request, client_address):
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def server_close(self):
        self._loop.close()

    @_loop_default
    def finish_request(self, request, client_address):
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request):
        self.close_request(request)

    def close_request(self, request):
        pass

    def handle_error(self, request, client_address):
        """Report a handler's exception on stderr; the server keeps going."""
        rule = "-" * 40
        print(rule, file=sys.stderr)
        print("Exception occurred during processing of request from",
              client_address, file=sys.stderr)
        traceback.print_exc()
        print(rule, file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.server_close()


class TCPServer(BaseServer):
    """A stream server; for TCP, every accepted connection gets TCP_NODELAY unless
    ``tcp_nodelay`` is false.

    ``tcp_nodelay = True`` (this package's default; the stdlib has no such attribute): small
    writes leave at once instead of waiting, under Nagle's algorithm, for the client to
    acknowledge the previous one -- which costs handlers that answer with two writes (such as
    http.server on keep-alive connections) about 40 ms a request.  False or None leaves the
    accepted sockets as the kernel made them, as the stdlib does; a handler's
    ``disable_nagle_algorithm = True`` still sets the option either way.  Unix-domain servers
    are not affected.
    """

    address_family = socket.AF_INET
    socket_type = socket.SOCK_STREAM
    request_queue_size = 5
    allow_reuse_address = False
    allow_reuse_port = False
    tcp_nodelay = True

    def __init__(self, server_address, RequestHandlerClass, bind_and_activate=True):
        BaseServer.__init__(self, server_address, RequestHandlerClass)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self):
        sock = self.socket
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # SO_REUSEPORT means nothing useful for Unix sockets and fails on some systems.
        if (self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT")
                and self.address_family in (socket.AF_INET, socket.AF_INET6)):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(self.server_address)
        self.server_address = sock.getsockname()

    def server_activate(self):
        self.socket.listen(self.request_queue_size)

    def server_close(self):
        BaseServer.server_close(self)
        self.socket.close()

    @_loop_default
    def fileno(self):
        return self.socket.fileno()

    @_loop_default
    def get_request(self):
        request, client_address = self.socket.accept()
        if wants_nodelay(self):
            set_nodelay(request)
        return request, client_address

    def shutdown_request(self, request):
        try:
            # Tell the client we are done even if the handler leaked a reference to the socket.
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close_request(request)

    def close_request(self, request):
        request.close()


class UDPServer(TCPServer):
    allow_reuse_address = False
    allow_reuse_port = False
    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    @_loop_default
    def get_request(self):
        data, client_address = self.socket.recvfrom(self.max_packet_size)
        return (data, self.socket), client_address

    def server_activate(self):
        pass

    @_loop_noop
    def shutdown_request(self, request):
        self.close_request(request)

    @_loop_noop
    def close_request(self, request):
        pass


if hasattr(socket, "AF_UNIX"):

    class UnixStreamServer(TCPServer):
        address_family = socket.AF_UNIX

    class UnixDatagramServer(UDPServer):
        address_family = socket.AF_UNIX
