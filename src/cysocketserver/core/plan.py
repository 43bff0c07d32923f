"""The plan: what an engine needs to serve one serve_forever() or handle_request() call,
computed once from the server's hooks and settings, as plain data, so that the engine never
inspects the server itself.

Also decided here: the batch size, the back-off after accept() runs out of descriptors, the
handle_request() timeout, and whether a listener other processes share is waited on with an
exclusive wake-up.
"""
import os
import select
import socket
import sys

from .._loopcommon import INTAKE_ACCEPT, INTAKE_HOOKS, INTAKE_RECVFROM
from . import guards as _guards
from .admission import defers_to_request_context, intake_error, make_admit
from .hooks import is_default, is_noop
from .nodelay import wants_nodelay
from .state import state_of

TYPE_CHECKING = False  # typing costs milliseconds at import; Plan's annotations are strings
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

__all__ = ["BATCH", "PAUSE_FIRST", "PAUSE_MAX", "EXCLUSIVE_WAKEUP", "Backoff", "Plan",
           "make_plan", "request_timeout", "listening"]

# Requests taken per wake-up of the listener: enough to drain a burst, few enough to stay fair
# to service_actions() and to a shutdown().
BATCH = 16
# After accept() runs out of descriptors (or buffers), leave the listener alone this long,
# doubling up to the maximum: retrying at once cannot help and would spin.
PAUSE_FIRST = 0.01
PAUSE_MAX = 0.5
# Whether this platform can wait for a listener that several processes share so that one idle
# waiter wakes per connection rather than all of them: Linux's EPOLLEXCLUSIVE (kernel 4.5).
# Elsewhere a shared listener is waited on the ordinary way.
EXCLUSIVE_WAKEUP = sys.platform.startswith("linux") and hasattr(select, "EPOLLEXCLUSIVE")


# -- timeouts and back-off ----------------------------------------------------------------------

def request_timeout(server):
    """handle_request()'s timeout: the smaller of the socket's and ``server.timeout``."""
    timeout = server.socket.gettimeout()
    if timeout is None:
        return server.timeout
    if server.timeout is not None:
        return min(timeout, server.timeout)
    return timeout


class Backoff:
    """How long to leave the listener alone after each resource failure in a row."""

    __slots__ = ("first", "maximum", "current")

    def __init__(self, first=PAUSE_FIRST, maximum=PAUSE_MAX):
        self.first = self.current = first
        self.maximum = maximum

    def next_pause(self):
        pause = self.current
        self.current = min(pause * 2, self.maximum)
        return pause

    def reset(self):
        self.current = self.first


class listening:
    """``with listening(server, fd, nonblocking):`` the listener non-blocking while an engine
    takes batches off it (a batch ends at EAGAIN), and as the caller found it afterwards --
    unless the server has closed it meanwhile (the number may belong to another descriptor by
    then)."""

    __slots__ = ("server", "fd", "changed")

    def __init__(self, server, fd, nonblocking):
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        self.server = server
        self.fd = fd
        self.changed = nonblocking and os.get_blocking(fd)

    def __enter__(self):
        if self.changed:
            os.set_blocking(self.fd, False)
        return self.fd

    def __exit__(self, *exc_info):
        if self.changed and self.server.fileno() == self.fd:
            try:
                os.set_blocking(self.fd, True)
            except OSError:
                pass


# -- the plan -----------------------------------------------------------------------------------

class Plan:
    """What the engine needs to serve one serve_forever()/handle_request() call: plain data,
    computed once from the server's hooks, so the engine never inspects the server itself."""

    fd: int                       # the listener
    intake: int                   # INTAKE_*
    batch: int                    # requests per wake-up
    family: int                   # of the accepted sockets (native intakes)
    type: int
    proto: int
    listener: "Any"                 # the server's socket
    request_class: "Any"            # the class accepted descriptors become
    max_packet: int               # datagram size (INTAKE_RECVFROM)
    admit: "Callable[[Any, Any], None]"        # one request, in the stdlib's order
    take_one: "Callable[[], Any]"              # _handle_request_noblock (INTAKE_HOOKS)
    after_wait: "Optional[Callable[[], Any]]"  # service_actions, None when it does nothing
    handle_timeout: "Callable[[], Any]"
    backoff: "Backoff"
    inline: bool                  # process_request/finish_request are ours: run the handler here
    skip_release: bool            # shutdown_request/close_request are ours and do nothing
    track_connections: bool       # stream connections go into the registry
    nonblocking: bool             # the listener is non-blocking while serving
    nodelay: bool                 # accepted connections get TCP_NODELAY (INTAKE_ACCEPT)
    can_take: "Optional[Callable[[], bool]]"   # asked after each request; None: always
    room: "Optional[Callable[[], bool]]"       # asked before taking: under max_connections
    intake_error: "Callable[[int], float]"     # accept()/recvfrom() failed: pause seconds
    guards: "Any"                   # core.guards.Guards
    proxy: "Any"                    # core.proxyproto.HeaderReader, None without the PROXY protocol
    tls: "Any"                      # core.tls.TlsPolicy, None without ssl_context
    exclusive: bool               # wait for the listener with an exclusive wake-up: of the
                                  # processes sharing it, one idle one wakes


def _after_wait(server):
    """What runs after each wake-up of serve_forever(): service_actions() (unless it does
    nothing), preceded by the housekeeping of a server that has some (a prefork worker's
    heartbeat, ``ServerState.housekeeping``)."""
    service = None if is_noop(server, "service_actions") else server.service_actions
    housekeeping = state_of(server).housekeeping
    if housekeeping is None:
        return service
    if service is None:
        return housekeeping

    def both():
        housekeeping()
        service()

    return both


def make_plan(server, model):
    """The plan for ``server`` as its hooks are now, run by the concurrency ``model``: it gives
    the batch (1 where the stdlib's one request per wake-up matters, as for ForkingMixIn's
    max_children), the class of accepted sockets, whether the listener is waited on through a
    hub (then it is always non-blocking), whether it can refuse work (``can_take``: the
    model's answer, and room under max_connections), and whether the listener is waited on
    with an exclusive wake-up (a prefork worker's, or a server whose ``_shared_listener`` says
    other processes serve the same socket, where the platform can)."""
    plan = Plan()
    plan.guards = guards = _guards.settings(server)
    batch = model.batch
    request_class = model.request_class
    cooperative = model.cooperative
    fd = server.fileno()
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    plan.fd = fd
    plan.batch = batch
    plan.backoff = Backoff()
    plan.take_one = server._handle_request_noblock
    plan.handle_timeout = server.handle_timeout
    plan.after_wait = _after_wait(server)
    plan.inline = is_default(server, "process_request") and is_default(server, "finish_request")
    plan.skip_release = is_noop(server, "shutdown_request") and is_noop(server, "close_request")
    plan.request_class = request_class
    plan.listener = sock = getattr(server, "socket", None)
    plan.family = plan.type = plan.proto = 0
    plan.max_packet = 0
    plan.intake = INTAKE_HOOKS
    # Only a plain socket.socket listener: one wrapped with wrap_socket() (an ssl.SSLSocket, as
    # http.server.HTTPSServer makes) is accepted through its own accept(), as the stdlib does.
    native = (is_default(server, "_handle_request_noblock") and is_default(server, "get_request")
              and is_default(server, "fileno") and type(sock) is socket.socket
              and sock.family in (socket.AF_INET, socket.AF_INET6)
              # A listener with a timeout would make the pure engine's accept() wait.
              and sock.gettimeout() is None)
    if native:
        plan.family, plan.type, plan.proto = sock.family, sock.type, sock.proto
        if sock.type == socket.SOCK_STREAM:
            plan.intake = INTAKE_ACCEPT
        elif sock.type == socket.SOCK_DGRAM:
            plan.intake = INTAKE_RECVFROM
            plan.max_packet = server.max_packet_size
    plan.nodelay = plan.intake == INTAKE_ACCEPT and wants_nodelay(server)
    plan.track_connections = sock is not None and getattr(sock, "type", None) == socket.SOCK_STREAM
    plan.nonblocking = cooperative or plan.intake != INTAKE_HOOKS
    plan.exclusive = EXCLUSIVE_WAKEUP and (state_of(server).shared_listener
                                         or bool(getattr(server, "_shared_listener", False)))
    if getattr(server, "proxy_protocol", None) is None:
        plan.proxy = None
    else:
        from .proxyproto import make_header_reader  # only servers that receive the protocol

        plan.proxy = make_header_reader(server, model)
    if getattr(server, "ssl_context", None) is None:
        plan.tls = None
    else:
        from .tls import make_tls  # only servers that speak TLS load ssl

        plan.tls = make_tls(server, model, defers_to_request_context(server, model))
    plan.admit = make_admit(server, plan)
    plan.intake_error = lambda err: intake_error(server, plan, err)
    # Asked around every request only where the model or the limit can say no.
    model_can_take = None if getattr(model, "always_takes", False) else model.can_take
    limit = guards.max_connections if plan.track_connections else None
    if limit is None:
        plan.room = None
        plan.can_take = model_can_take
    else:
        registry = server._connection_registry
        plan.room = room = lambda: len(registry) < limit
        if model_can_take is None:
            plan.can_take = room
        else:
            plan.can_take = lambda: len(registry) < limit and model_can_take()
    return plan
