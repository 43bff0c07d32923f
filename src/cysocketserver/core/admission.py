"""The per-request order, written once: what happens to a request from the moment it is taken
off the listener to its release, with the stdlib's exception semantics.

``make_admit`` is what the serving loop runs for each request (verify_request(), then
process_request(), as BaseServer._handle_request_noblock does); ``serve_request`` is what
every concurrency model runs in the request's own context (as
ThreadingMixIn.process_request_thread does); ``admit_in_child`` what a forked child runs
before its handler; ``release`` ends every request's life.

The order is the same wherever each step runs: the PROXY header, the TLS handshake, the
per-client limit, verify_request(), the handler.  The header and the handshake wait for the
client, so they run in the request's own context where the model has one
(``defers_to_request_context``), and verify_request() with them, after them.  Where the
guards act on a request is here too: the per-client limit at admission, and the counting of
handler and accept errors.
"""
import errno

from .hooks import is_default, runs_in_request_context
from .state import state_of

__all__ = ["RESOURCE_ERRNOS", "make_admit", "serve_request", "admit_in_child", "release",
           "over_client_limit", "handler_failed", "intake_error", "defers_to_request_context"]

# accept() errors that mean the process (or the system) is out of a resource: retrying at once
# cannot help, so the listener is left alone for a while (Plan.backoff).
RESOURCE_ERRNOS = frozenset(
    code for code in (getattr(errno, name, None) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"))
    if code is not None
)


def defers_to_request_context(server, model):
    """Whether what waits for the client before verify_request() (the PROXY header, the TLS
    handshake) can run in the request's own context (thread, pooled thread, greenlet): only
    where the model runs requests in a context of their own, and the server's
    process_request() and the hook the model runs there (``model.context_hook``) are the
    package's, which go through ``serve_request``."""
    context_hook = getattr(model, "context_hook", None)
    return (context_hook is not None
            and runs_in_request_context(server, "process_request")
            and runs_in_request_context(server, context_hook))


def release(server, request):
    """The end of a request's life: out of the connection registry, a TLS connection's
    close_notify, and shutdown_request().

    In that order: once out of the registry, the guards can no longer cut the connection, so
    they never shut down a descriptor number that closing has handed to a newer connection."""
    try:
        server._connection_registry.discard(request)
        plan = state_of(server).plan
        if plan is not None and plan.tls is not None:
            plan.tls.notify_close(request)
    finally:
        server.shutdown_request(request)


def serve_request(server, request, client_address):
    """Run one admitted request to its end, as ThreadingMixIn.process_request_thread does:
    finish_request(); an Exception goes to handle_error(); shutdown_request() always.
    Every concurrency model runs its requests through this.  Where the PROXY header is read
    (``Plan.proxy.deferred``) or the TLS handshake is run (``Plan.tls.deferred``) in the
    request's own context, they come first, in that order, then the per-client limit (after
    a header) and verify_request()."""
    try:
        plan = state_of(server).plan
        if plan is not None:
            reader = plan.proxy
            tls = plan.tls
            deferred = False
            if reader is not None and reader.deferred:
                deferred = True
                client_address = reader.receive(request, client_address)
                if client_address is None:
                    return
            if tls is not None and tls.deferred:
                deferred = True
                request, done = tls.accept(request, client_address)
                if not done:
                    return
            if deferred:
                per_client = plan.guards.max_connections_per_client
                if (per_client is not None and reader is not None and reader.deferred
                        and over_client_limit(server, request, client_address, per_client)):
                    return
                if not server.verify_request(request, client_address):
                    return
        server.finish_request(request, client_address)
    except Exception as exc:
        handler_failed(server, request, client_address, exc)
    finally:
        release(server, request)


def admit_in_child(server, request, client_address):
    """In a forked child, before the handler: the TLS handshake and verify_request() where the
    plan leaves them to the child (``Plan.tls.in_child``).  Returns ``(request, admitted)``:
    the request to handle and shut down (the TLS socket once wrapped), and whether to handle
    it.  verify_request()'s exceptions propagate (the child reports them)."""
    plan = state_of(server).plan
    tls = None if plan is None else plan.tls
    if tls is None or not tls.in_child:
        return request, True
    # The serving thread wrapped it (make_admit).
    if not tls.handshake(request, client_address):
        return request, False
    return request, bool(server.verify_request(request, client_address))


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
    # A TLS socket shut down by a guard lets go of its TLS state: its next call raises
    # ValueError rather than OSError.
    if isinstance(exc, (OSError, ValueError)) and registry.was_cut(request):
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
    reader = plan.proxy
    receive = None
    if reader is not None:
        if reader.deferred:
            # serve_request() verifies (and counts the client) once it has read the header.
            verify = None
            per_client = None
        else:
            receive = reader.receive
    tls = plan.tls
    handshake = None
    if tls is not None:
        if tls.deferred:
            # Verified after the handshake, in the request's context.
            verify = None
        elif tls.in_child:
            # Wrapped here (no I/O), shaken hands with and verified in the child.
            verify = None
            handshake = tls.wrap
        else:
            # In the serving thread: the plain servers' own (one request at a time), or
            # before a process_request() of the user's.
            handshake = tls.accept
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
        if handshake is not None:
            request, done = handshake(request, client_address)
            if not done:
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
