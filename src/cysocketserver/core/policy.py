"""The serve policy, written once: every engine and every concurrency model reads it from here.

- which of a server's hooks are overridden (one mechanism: the markers below);
- the plan for one serve_forever()/handle_request() call, as plain data the engine reads;
- the per-request order and its exception semantics (``make_admit`` and ``serve_request``);
- the handle_request() timeout, the accept back-off and the batch size;
- whether the listener is waited on with an exclusive wake-up (``EXCLUSIVE_WAKEUP``);
- where the guards (``core.guards``) act on a request: the per-client limit at admission, the
  max_connections gate in ``can_take``, the counting of handler and accept errors.
"""
import contextlib
import errno
import os
import select
import socket
import sys
from typing import Any, Callable, Optional

from . import guards as _guards
from .nodelay import wants_nodelay
from .proxyproto import deferred_intake, make_intake

__all__ = [
    "BATCH", "PAUSE_FIRST", "PAUSE_MAX", "RESOURCE_ERRNOS", "EXCLUSIVE_WAKEUP",
    "INTAKE_HOOKS", "INTAKE_ACCEPT", "INTAKE_RECVFROM",
    "default_hook", "noop_hook", "is_default", "is_noop",
    "Backoff", "Plan", "make_plan", "make_admit", "serve_request", "release",
    "request_timeout", "listening", "intake_error", "handler_failed", "over_client_limit",
]

# Requests taken per wake-up of the listener: enough to drain a burst, few enough to stay fair
# to service_actions() and to a shutdown().
BATCH = 16
# After accept() runs out of descriptors (or buffers), leave the listener alone this long,
# doubling up to the maximum: retrying at once cannot help and would spin.
PAUSE_FIRST = 0.01
PAUSE_MAX = 0.5
RESOURCE_ERRNOS = frozenset(
    code for code in (getattr(errno, name, None) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"))
    if code is not None
)
# Whether this platform can wait for a listener that several processes share so that one idle
# waiter wakes per connection rather than all of them: Linux's EPOLLEXCLUSIVE (kernel 4.5).
# Elsewhere a shared listener is waited on the ordinary way.
EXCLUSIVE_WAKEUP = sys.platform.startswith("linux") and hasattr(select, "EPOLLEXCLUSIVE")

# How requests come off the listener.
INTAKE_HOOKS = 0      # the server's own _handle_request_noblock()/get_request(), one per wake-up
INTAKE_ACCEPT = 1     # the engine accepts in batches (stream sockets, IPv4/IPv6)
INTAKE_RECVFROM = 2   # the engine receives datagrams in batches (IPv4/IPv6)


# -- which hooks are the package's own ----------------------------------------------------------

def default_hook(func):
    """Mark a hook as this package's own: where a server still has it, the engine may do its work
    natively.  A subclass (or an instance attribute) that replaces it is called instead."""
    func._cysocketserver_default = True
    return func


def noop_hook(func):
    """Mark one of this package's hooks that does nothing, so that it need not be called."""
    func._cysocketserver_noop = True
    return default_hook(func)


def _hook_function(server, name):
    return getattr(getattr(server, name, None), "__func__", None)


def is_default(server, name):
    """Whether ``server.<name>`` (even one patched on the instance) is this package's own."""
    return getattr(_hook_function(server, name), "_cysocketserver_default", False) is True


def is_noop(server, name):
    return getattr(_hook_function(server, name), "_cysocketserver_noop", False) is True


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


@contextlib.contextmanager
def listening(server, fd, nonblocking):
    """The listener non-blocking while an engine takes batches off it (a batch ends at EAGAIN),
    and as the caller found it afterwards — unless the server has closed it meanwhile (the
    number may belong to another descriptor by then)."""
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    changed = nonblocking and os.get_blocking(fd)
    if changed:
        os.set_blocking(fd, False)
    try:
        yield fd
    finally:
        if changed and server.fileno() == fd:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)


# -- the per-request order ----------------------------------------------------------------------

def release(server, request):
    """The end of a request's life: out of the connection registry, and shutdown_request().

    In that order: once out of the registry, the guards can no longer cut the connection, so
    they never shut down a descriptor number that closing has handed to a newer connection."""
    try:
        server._connection_registry.discard(request)
    finally:
        server.shutdown_request(request)


def serve_request(server, request, client_address):
    """Run one admitted request to its end, as ThreadingMixIn.process_request_thread does:
    finish_request(); an Exception goes to handle_error(); shutdown_request() always.
    Every concurrency model runs its requests through this.  With the PROXY protocol read
    here (``core.proxyproto``), the header comes first, then verify_request()."""
    try:
        intake = deferred_intake(server)
        if intake is not None:
            client_address = intake.receive(request, client_address)
            if client_address is None:
                return
            plan = server.__dict__.get("_plan_")
            per_client = None if plan is None else plan.guards.max_connections_per_client
            if per_client is not None and over_client_limit(server, request, client_address,
                                                            per_client):
                return
            if not server.verify_request(request, client_address):
                return
        server.finish_request(request, client_address)
    except Exception as exc:
        handler_failed(server, request, client_address, exc)
    finally:
        release(server, request)


def over_client_limit(server, request, client_address, limit):
    """max_connections_per_client: whether the connection's host (the client the PROXY header
    names, once read) has more than ``limit`` live connections; a refusal is counted."""
    registry = server._connection_registry
    if registry.count_client(request, client_address) <= limit:
        return False
    registry.counters.connection_rejected()
    return True


def handler_failed(server, request, client_address, exc):
    """A handler raised: count it and call handle_error() -- unless it is the OSError of a
    connection a guard cut (idle_timeout, drain_timeout), which the guard already counted."""
    registry = server._connection_registry
    if isinstance(exc, OSError) and registry.was_cut(request):
        return
    registry.counters.handler_error()
    server.handle_error(request, client_address)


def intake_error(server, plan, err):
    """accept() (or recvfrom()) failed with ``err``: count it, and return how long to leave the
    listener alone (0: go on; the engine retries EINTR and stops a batch at EAGAIN itself)."""
    server._connection_registry.counters.accept_error()
    if err in RESOURCE_ERRNOS:
        return plan.backoff.next_pause()
    return 0.0


def make_admit(server, plan):
    """``admit(request, client_address)``: what the stdlib does with a request once
    get_request() returned it — verify_request(), then process_request(); process_request's
    Exceptions go to handle_error() and the request is shut down; other BaseExceptions
    (KeyboardInterrupt, SystemExit) propagate once it is shut down.  verify_request's own
    exceptions propagate.  Hooks left as this package defines them are not called through
    their frames: the result is the same."""
    registry = server._connection_registry
    track = registry.add if plan.track_connections else None
    per_client = plan.guards.max_connections_per_client if plan.track_connections else None
    verify = None if is_default(server, "verify_request") else server.verify_request
    intake = plan.proxy
    receive = None
    if intake is not None:
        if intake.deferred:
            # serve_request() verifies (and counts the client) once it has read the header.
            verify = None
            per_client = None
        else:
            receive = intake.receive
    inline = plan.inline
    skip_release = plan.skip_release
    process = server.process_request
    shutdown_request = server.shutdown_request

    def admit(request, client_address):
        if track is not None:
            track(request, client_address)
        if receive is not None:
            client_address = receive(request, client_address)
            if client_address is None:
                release(server, request)
                return
        if per_client is not None and over_client_limit(server, request, client_address,
                                                        per_client):
            # Too many from that host: closed at once, no handler, no verify_request().
            release(server, request)
            return
        if verify is not None and not verify(request, client_address):
            release(server, request)
            return
        try:
            if inline:
                # BaseServer.process_request and finish_request, without their frames.
                server.RequestHandlerClass(request, client_address, server)
                if not skip_release:
                    release(server, request)
            else:
                process(request, client_address)
        except Exception as exc:
            handler_failed(server, request, client_address, exc)
            release(server, request)
        except BaseException:
            if skip_release:
                shutdown_request(request)
            else:
                release(server, request)
            raise

    return admit


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
    listener: Any                 # the server's socket
    request_class: Any            # the class accepted descriptors become
    max_packet: int               # datagram size (INTAKE_RECVFROM)
    admit: Callable[[Any, Any], None]        # one request, in the stdlib's order
    take_one: Callable[[], Any]              # _handle_request_noblock (INTAKE_HOOKS)
    after_wait: Optional[Callable[[], Any]]  # service_actions, None when it does nothing
    handle_timeout: Callable[[], Any]
    backoff: Backoff
    inline: bool                  # process_request/finish_request are ours: run the handler here
    skip_release: bool            # shutdown_request/close_request are ours and do nothing
    track_connections: bool       # stream connections go into the registry
    nonblocking: bool             # the listener is non-blocking while serving
    nodelay: bool                 # accepted connections get TCP_NODELAY (INTAKE_ACCEPT)
    can_take: Optional[Callable[[], bool]]   # asked after each request; None: always
    room: Optional[Callable[[], bool]]       # asked before taking: under max_connections
    intake_error: Callable[[int], float]     # accept()/recvfrom() failed: pause seconds
    guards: Any                   # core.guards.Guards
    proxy: Any                    # core.proxyproto.ProxyIntake, None without the PROXY protocol
    exclusive: bool               # wait for the listener with an exclusive wake-up: of the
                                  # processes sharing it, one idle one wakes


def _after_wait(server):
    """What runs after each wake-up of serve_forever(): service_actions() (unless it does
    nothing), preceded by the housekeeping of a server that has some (a prefork worker's
    heartbeat, set as the instance's ``_housekeeping_``)."""
    service = None if is_noop(server, "service_actions") else server.service_actions
    housekeeping = getattr(server, "__dict__", {}).get("_housekeeping_")
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
    with an exclusive wake-up (a server whose ``_shared_listener`` says other processes serve
    the same socket, where the platform can)."""
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
    plan.exclusive = EXCLUSIVE_WAKEUP and bool(getattr(server, "_shared_listener", False))
    plan.proxy = make_intake(server, model)
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
