"""Greenlet servers: each request's handler in its own greenlet, all on one OS thread.

``GreenletMixIn`` runs serve_forever() on a hub (the engine's ``Hub``: epoll in C, or
``selectors`` in the pure engine) in the thread that calls it, and handles every request in a
new greenlet.  Handlers keep the blocking style of ``StreamRequestHandler``: ``rfile``,
``wfile`` and ``self.request`` are cooperative, so a call that would block parks the greenlet
and the hub runs the others.

Also here: ``connect()`` (a cooperative client socket), ``sleep()``, ``to_thread()`` (run a
blocking function in a worker thread and wait for it without holding the hub), and
``GreenSocket``, the cooperative ``socket.socket``.
"""
import contextlib
import errno
import os
import socket
import struct
import threading
import time
from time import monotonic

import _socket
from greenlet import GreenletExit, getcurrent

from . import _engine
from ._hubcommon import HubBlockedWarning, env_int
from ._loopcommon import LISTENER_READY, WOKEN
from .core.admission import release, serve_request
from .core.hooks import in_request_context
from .core.plan import listening
from .core.state import state_of
from .models.base import Model
from .handlers import _register_stream_socket
from .servers import TCPServer, UDPServer
from .threadpool import WorkerPool

__all__ = [
    "GreenletMixIn", "GreenletTCPServer", "GreenletUDPServer", "GreenSocket",
    "connect", "sleep", "spawn", "to_thread", "get_hub", "HubBlockedWarning",
]

POLLIN = 1
POLLOUT = 4
_CONNECTING = frozenset(
    code for code in (getattr(errno, name, None)
                      for name in ("EINPROGRESS", "EAGAIN", "EWOULDBLOCK", "EALREADY"))
    if code is not None
)
# Seconds a greenlet may keep the hub before a HubBlockedWarning, when a server does not say.
BLOCK_WARNING_ENV = "CYSOCKETSERVER_HUB_BLOCK_WARNING"

_tls = threading.local()
_ss = _socket.socket


class _HubOwner:
    """Held by the thread-local storage only: when the thread ends, its hub's descriptors close.

    (The hub itself is kept alive by its own greenlet, which a finished thread cannot end.)
    """

    __slots__ = ("hub",)

    def __init__(self, hub):
        self.hub = hub

    def __del__(self):
        self.hub.close()


def get_hub():
    """This thread's hub, made on first use (on the current engine)."""
    hub = getattr(_tls, "hub", None)
    engine = _engine.current()
    if hub is None or hub.__class__ is not engine.Hub:
        hub = engine.Hub()
        _tls.owner = _HubOwner(hub)
        _tls.hub = hub
    return hub


def _existing_hub():
    return getattr(_tls, "hub", None)


def _forget_hub_after_fork():
    """In the child of fork(): this thread's hub shares its epoll set and wake-up descriptor
    with the parent's.  Let go of it (closing only this process's copies); the next get_hub()
    makes a fresh one.  Hubs of the other threads (which do not exist in the child) close when
    their thread-local storage goes."""
    hub = _tls.__dict__.pop("hub", None)
    owner = _tls.__dict__.pop("owner", None)
    if hub is not None:
        hub.abandon()
    del owner


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_hub_after_fork)


def _io_done():
    """A socket call completed without waiting: count it against the greenlet's turn."""
    hub = getattr(_tls, "hub", None)
    if hub is not None:  # no hub on this thread: no other greenlet to give way to
        hub.io_done()


def sleep(seconds):
    """Sleep without holding the hub: other greenlets run meanwhile."""
    get_hub().sleep(seconds)


def spawn(function, *args):
    """Run ``function(*args)`` in a new greenlet on this thread's hub; returns the greenlet."""
    return get_hub().spawn(function, *args)


def _default_to_thread_threads():
    value = env_int(TO_THREAD_ENV, 1, None)
    if value is not None:
        return value
    # concurrent.futures' (and so asyncio's) default: the calls mostly wait on I/O, so more
    # threads than cores pay off, but each costs a stack and its share of the GIL.
    return min(32, (os.cpu_count() or 1) + 4)


# The most threads to_thread() runs its calls on at once (one pool for the whole process;
# more calls wait their turn, in order).  Read at each call: it may be changed at any time.
TO_THREAD_ENV = "CYSOCKETSERVER_TO_THREAD_MAX_THREADS"
TO_THREAD_MAX_THREADS = _default_to_thread_threads()
_to_thread_pool = None
_to_thread_pool_lock = threading.Lock()


def _to_thread_workers():
    global _to_thread_pool
    pool = _to_thread_pool
    if pool is None:
        with _to_thread_pool_lock:
            pool = _to_thread_pool
            if pool is None:
                pool = _to_thread_pool = WorkerPool(TO_THREAD_MAX_THREADS,
                                                    name="cysocketserver-to_thread")
    if pool.max_threads != TO_THREAD_MAX_THREADS:
        pool.max_threads = TO_THREAD_MAX_THREADS
    return pool


def to_thread(function, /, *args, **kwargs):
    """Call a blocking ``function(*args, **kwargs)`` in a worker thread and return its result.

    The calling greenlet waits cooperatively: the hub keeps serving the others, and the worker
    wakes it through the hub's wake-up descriptor.  The workers are a pool of at most
    ``TO_THREAD_MAX_THREADS`` threads; further calls wait for a free one, in order.  In a
    thread that runs no hub (a threaded server's handler, say) there is nothing to keep
    serving: the function is simply called there, and no hub is made.
    """
    hub = _existing_hub()
    if hub is None:
        return function(*args, **kwargs)
    me = getcurrent()
    outcome = []

    def work():
        try:
            outcome.append((True, function(*args, **kwargs)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            hub.wake_threadsafe(me)

    _to_thread_workers().submit(work)
    while not outcome:
        hub.park()
    ok, value = outcome.pop()
    if ok:
        return value
    try:
        raise value
    finally:
        del value


def connect(address, timeout=None):
    """A cooperative socket connected to ``address`` (host, port) or a Unix socket path.

    Like ``socket.create_connection(address, timeout)``: the socket's timeout is ``timeout``.
    Host names are resolved in a worker thread.
    """
    if isinstance(address, (str, bytes)) and hasattr(socket, "AF_UNIX"):
        candidates = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, address)]
    else:
        host, port = address[:2]
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                       socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
        except (socket.gaierror, UnicodeError):
            infos = to_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        candidates = [(af, kind, proto, addr) for af, kind, proto, _name, addr in infos]
    error = None
    for family, kind, proto, addr in candidates:
        sock = GreenSocket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    if error is not None:
        try:
            raise error
        finally:
            error = None
    raise OSError("getaddrinfo returns an empty list")


@_register_stream_socket
class GreenSocket(socket.socket):
    """A ``socket.socket`` whose blocking calls park the greenlet instead of the thread.

    The descriptor itself is non-blocking; ``settimeout()``/``gettimeout()`` keep the timeout
    you set, and a call that runs out of it raises ``TimeoutError('timed out')`` as the
    stdlib's does.  The compiled ``rfile``/``wfile`` drive the descriptor directly and wait
    through ``_cysocketserver_wait``.  On a greenlet server, the bytes its recv/send methods
    move are counted in the server's ``stats()`` (``_meter``).
    """

    __slots__ = ("_coop_timeout", "_hub", "_meter")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        super().__init__(family, type, proto, fileno)
        self._hub = None
        self._meter = None
        self._coop_timeout = socket.getdefaulttimeout()
        _ss.settimeout(self, 0.0)
        hub = _existing_hub()
        if hub is not None:
            # A descriptor number closed behind the hub's back may be this one now.
            hub.forget_fd(_ss.fileno(self))

    @classmethod
    def from_socket(cls, sock):
        """Take over a plain socket.socket (which is detached), keeping its timeout."""
        timeout = sock.gettimeout()
        new = cls(sock.family, sock.type, sock.proto, sock.detach())
        new._coop_timeout = timeout
        return new

    # -- waiting --------------------------------------------------------------------------------

    @property
    def _cysocketserver_wait(self):
        """``wait(fd, events, deadline)``: park until fd is ready for events (POLLIN/POLLOUT) or
        until the time.monotonic() deadline (< 0: none); True if it timed out.

        The current thread's hub's own method, so that the compiled rfile/wfile, which take it
        once, call straight into the hub.
        """
        hub = self._hub
        if hub is None or hub is not getattr(_tls, "hub", None):
            # First use, another thread's hub, or one left behind by fork().
            hub = self._hub = get_hub()
        return hub.wait_fd

    def _io(self, method, events, *args):
        try:
            result = method(self, *args)
        except BlockingIOError:
            timeout = self._coop_timeout
            if timeout == 0.0:
                raise
        else:
            _io_done()
            return result
        deadline = -1.0 if timeout is None else monotonic() + timeout
        while True:
            if self._cysocketserver_wait(_ss.fileno(self), events, deadline):
                raise TimeoutError("timed out")
            try:
                result = method(self, *args)
            except BlockingIOError:
                pass
            else:
                _io_done()
                return result

    # -- timeouts -------------------------------------------------------------------------------

    def settimeout(self, value, /):
        _ss.settimeout(self, value)  # validated (and converted) as the stdlib does
        self._coop_timeout = _ss.gettimeout(self)
        _ss.settimeout(self, 0.0)

    def gettimeout(self):
        return self._coop_timeout

    def setblocking(self, flag, /):
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        return self._coop_timeout != 0.0

    @property
    def timeout(self):
        return self._coop_timeout

    # -- the blocking calls -----------------------------------------------------------------------

    def recv(self, bufsize, flags=0, /):
        data = self._io(_ss.recv, POLLIN, bufsize, flags)
        if self._meter is not None:
            self._meter.received += len(data)
        return data

    def recv_into(self, buffer, nbytes=0, flags=0):
        got = self._io(_ss.recv_into, POLLIN, buffer, nbytes, flags)
        if self._meter is not None:
            self._meter.received += got
        return got

    def recvfrom(self, bufsize, flags=0, /):
        return self._io(_ss.recvfrom, POLLIN, bufsize, flags)

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self._io(_ss.recvfrom_into, POLLIN, buffer, nbytes, flags)

    def send(self, data, flags=0, /):
        sent = self._io(_ss.send, POLLOUT, data, flags)
        if self._meter is not None:
            self._meter.sent += sent
        return sent

    def sendto(self, data, /, *flags_and_address):
        return self._io(_ss.sendto, POLLOUT, data, *flags_and_address)

    def sendall(self, data, flags=0, /):
        with memoryview(data) as view, view.cast("B") as remaining:
            total = len(remaining)
            sent = 0
            deadline = None
            try:
                while sent < total:
                    try:
                        sent += _ss.send(self, remaining[sent:], flags)
                        _io_done()
                        continue
                    except BlockingIOError:
                        timeout = self._coop_timeout
                        if timeout == 0.0:
                            raise
                    if deadline is None:
                        deadline = -1.0 if timeout is None else monotonic() + timeout
                    if self._cysocketserver_wait(_ss.fileno(self), POLLOUT, deadline):
                        raise TimeoutError("timed out")
            finally:
                if self._meter is not None:
                    self._meter.sent += sent

    def sendfile(self, file, offset=0, count=None):
        # os.sendfile would wait in a selector; send() parks the greenlet instead.
        return self._sendfile_use_send(file, offset, count)

    def accept(self):
        fd, address = self._io(_ss._accept, POLLIN)
        return GreenSocket(self.family, self.type, self.proto, fileno=fd), address

    def connect(self, address, /):
        err = _ss.connect_ex(self, address)
        if err == 0:
            return
        if err not in _CONNECTING:
            raise OSError(err, os.strerror(err))
        timeout = self._coop_timeout
        if timeout == 0.0:
            raise BlockingIOError(err, os.strerror(err))
        deadline = -1.0 if timeout is None else monotonic() + timeout
        if self._cysocketserver_wait(_ss.fileno(self), POLLOUT, deadline):
            raise TimeoutError("timed out")
        err = self.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address, /):
        try:
            self.connect(address)
        except TimeoutError:
            return errno.EAGAIN
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    # -- closing ----------------------------------------------------------------------------------

    def _forget(self):
        hub = self._hub
        fd = _ss.fileno(self)
        if hub is not None and fd >= 0:
            hub.forget_fd(fd)

    def _real_close(self, _ss=_ss):
        self._forget()
        _ss.close(self)

    def detach(self):
        self._forget()
        return super().detach()


def _cooperative(request):
    """The request as a cooperative socket (a plain accepted socket is taken over)."""
    if type(request) is socket.socket:
        return GreenSocket.from_socket(request)
    return request


def _block_warning(server):
    limit = server.hub_block_warning
    if limit is None:
        text = os.environ.get(BLOCK_WARNING_ENV)
        if text:
            try:
                limit = float(text)
            except ValueError:
                limit = None
    return limit


class HubWaiter:
    """The serve loop's waiter for a greenlet server: the listener is waited on through the hub
    of the thread that serves, so the handlers' greenlets run meanwhile."""

    # While the listener is not watched (the model is full, or accept() is backing off), the
    # loop naps in slices this long so that a wake-up is noticed.
    NAP = 0.02

    def __init__(self):
        self.hub = None
        self.fd = -1
        self.exclusive = False  # the listener is in the hub's epoll set with EPOLLEXCLUSIVE
        self.watching = False
        self.waiting = None     # the greenlet inside wait()
        self.woken = False

    def set_listener(self, fd, exclusive=False):
        hub = get_hub()
        if hub is not self.hub or fd != self.fd or exclusive != self.exclusive:
            self.forget()
            self.hub = hub
            self.fd = fd
            self.exclusive = exclusive
            self.watching = False
        self.watch()

    def watch(self):
        if not self.watching and self.exclusive:
            self.hub.set_exclusive(self.fd)
        self.watching = True

    def unwatch(self):
        if self.watching and self.exclusive:
            # Out of the hub's epoll set while not waited for: the hub may still wait for its
            # handlers' descriptors, and would take the one wake-up meant for an idle process.
            self.forget()
        self.watching = False

    def wait(self, timeout):
        hub = self.hub
        self.woken = False
        self.waiting = getcurrent()
        try:
            if self.watching:
                deadline = -1.0 if timeout is None else monotonic() + timeout
                timed_out = hub.wait_fd(self.fd, POLLIN, deadline)
                if self.woken:
                    return WOKEN
                return 0 if timed_out else LISTENER_READY
            hub.sleep(self.NAP if timeout is None else min(self.NAP, timeout))
            return WOKEN if self.woken else 0
        finally:
            self.waiting = None

    def wake(self):
        self.woken = True
        waiting, hub = self.waiting, self.hub
        if waiting is None or hub is None:
            return
        if hub.thread_ident == threading.get_ident():
            if waiting is not getcurrent():
                hub.wake(waiting)
        else:
            hub.wake_threadsafe(waiting)

    def forget(self):
        if self.hub is not None and self.fd >= 0:
            self.hub.forget_fd(self.fd)

    def close(self):
        self.forget()
        self.fd = -1


class Greenlets(Model):
    """A greenlet per request, all on the hub of the thread that serves: GreenletMixIn's model."""

    name = "greenlets"
    context_hook = "process_request_greenlet"
    request_class = GreenSocket
    cooperative = True

    def start(self, target, request, client_address):
        server = self.server
        st = server._greenlet_state
        hub = get_hub()
        st.hub = hub
        registry = server._connection_registry
        cooperative = _cooperative(request)
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
        hub = self.server._greenlet_state.hub
        if hub is not None and hub.thread_ident == threading.get_ident():
            hub.sleep(seconds)
        else:
            time.sleep(seconds)

    def stats(self):
        return {"greenlets_running": len(self.server._greenlet_state.handlers)}

    def close(self, block):
        pass  # GreenletMixIn.server_close() drains or kills its greenlets itself


class _State:
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


class GreenletMixIn:
    """Handle each request in a new greenlet on the hub of the thread running serve_forever().

    ``block_on_close``: server_close() (and serve_forever() after shutdown()) wait until the
    handlers have finished; when false, server_close() in the hub's thread ends them by raising
    GreenletExit in them.  While serve_forever() waits for its handlers after shutdown(), new
    clients are accepted and closed at once (reset), never left hanging in the backlog.
    ``hub_block_warning``: seconds; a greenlet that keeps the hub longer without waiting is
    reported with a HubBlockedWarning (default: the CYSOCKETSERVER_HUB_BLOCK_WARNING
    environment variable, or off).  With a ``drain_timeout``, that wait after shutdown() (and
    server_close()'s) lasts at most that long; the connections still open are then cut.
    """

    block_on_close = True
    hub_block_warning = None
    _model_class = Greenlets

    def _make_loop(self):
        return _engine.current().ServeLoop(HubWaiter())

    @property
    def _greenlet_state(self):
        state = state_of(self)
        if state.greenlet is None:
            state.greenlet = _State()
        return state.greenlet

    def _enter_hub(self):
        st = self._greenlet_state
        hub = get_hub()
        st.hub = hub
        hub.block_warning = _block_warning(self)
        return st, hub

    # -- serving ---------------------------------------------------------------------------------

    def serve_forever(self, poll_interval=0.5):
        """Serve on this thread's hub until shutdown(); then, with block_on_close, wait for the
        running handlers (at most drain_timeout, when one is set) before returning."""
        st, hub = self._enter_hub()
        st.is_shut_down.clear()
        st.serving = getcurrent()
        finished = False
        try:
            super().serve_forever(poll_interval)
            finished = True
        finally:
            st.serving = None
            st.draining = finished and self.block_on_close and bool(st.handlers)
            st.is_shut_down.set()
            for waiter in st.shutdown_waiters:
                hub.wake(waiter)
            del st.shutdown_waiters[:]
        if st.draining:
            refuser = self._refuse_while_draining(st, hub)
            try:
                # With a drain_timeout: wait that long, then cut the connections still open.
                self._drain()
                self._greenlet_drain(st, hub)
            finally:
                st.draining = False
                if refuser is not None:
                    hub.wake(refuser)

    def shutdown(self):
        """Stop serve_forever() and wait until it has stopped accepting.

        From another thread this waits as the stdlib's does; from a handler on the hub, the
        handler waits (cooperatively) until the loop has stopped.
        """
        st = self._greenlet_state
        hub = st.hub
        if hub is None or hub.thread_ident != threading.get_ident():
            self._loop.shutdown()
            return
        self._loop.request_shutdown(True)
        serving = st.serving
        me = getcurrent()
        if serving is None or me is serving:
            return
        while not st.is_shut_down.is_set():
            st.shutdown_waiters.append(me)
            hub.park()

    def handle_request(self):
        """Wait for one request (honouring the timeouts) and run its handler to the end."""
        st, hub = self._enter_hub()
        try:
            return super().handle_request()
        finally:
            self._greenlet_drain(st, hub)

    # -- the handlers ----------------------------------------------------------------------------

    @in_request_context
    def process_request(self, request, client_address):
        """Start a greenlet that handles the request; it runs when the hub next gets a turn."""
        self._model.start(self.process_request_greenlet, request, client_address)

    @in_request_context
    def process_request_greenlet(self, request, client_address):
        """What each handler greenlet runs: as ThreadingMixIn.process_request_thread."""
        try:
            serve_request(self, request, client_address)
        finally:
            self._greenlet_done(getcurrent())

    def _greenlet_done(self, glet):
        st = self._greenlet_state
        st.handlers.pop(glet, None)
        if not st.handlers:
            st.idle.set()
            waiters = st.idle_waiters[:]
            del st.idle_waiters[:]
            for waiter in waiters:
                st.hub.wake(waiter)

    def _greenlet_drain(self, st, hub):
        """Run the hub here until every handler greenlet has finished."""
        me = getcurrent()
        if me in st.handlers:
            return  # a handler cannot wait for itself
        while st.handlers:
            st.idle_waiters.append(me)
            hub.park()

    def _refuse_while_draining(self, st, hub):
        """A greenlet that resets each new connection until the drain ends (stream servers)."""
        sock = getattr(self, "socket", None)
        if sock is None or sock.type != socket.SOCK_STREAM or sock.fileno() < 0:
            return None
        fd = sock.fileno()

        def refuse():
            reset = struct.pack("ii", 1, 0)
            try:
                with listening(self, fd, True):
                    # Until the drain ends, or server_close() (from another thread) closes the
                    # listener: then there is nothing left to refuse.
                    while st.draining and sock.fileno() == fd:
                        if hub.wait_fd(fd, POLLIN, monotonic() + HubWaiter.NAP) or not st.draining:
                            continue
                        try:
                            conn, _address = sock.accept()
                        except OSError:
                            continue
                        with contextlib.suppress(OSError):
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
                        conn.close()
            except OSError:
                pass  # the listener was closed under us
            finally:
                hub.forget_fd(fd)

        return hub.spawn(refuse)

    def _greenlet_kill(self, st, hub):
        for glet, request in list(st.handlers.items()):
            hub.kill(glet, GreenletExit())
            if not glet:
                # Never started: it will never run, so its request is ours to shut down.
                del st.handlers[glet]
                release(self, request)
        if not st.handlers:
            st.idle.set()
        self._greenlet_drain(st, hub)

    def server_close(self):
        """Close the server; then, in the hub's thread, wait for the handlers (block_on_close)
        or end them with GreenletExit."""
        super().server_close()
        st = self._greenlet_state
        hub = st.hub
        if not st.handlers or hub is None:
            return
        if hub.thread_ident == threading.get_ident():
            if self.block_on_close:
                self._greenlet_drain(st, hub)
            else:
                self._greenlet_kill(st, hub)
        elif self.block_on_close and st.draining:
            st.idle.wait()


class GreenletTCPServer(GreenletMixIn, TCPServer):
    """TCPServer whose connections each run in a greenlet on the serving thread's hub."""


class GreenletUDPServer(GreenletMixIn, UDPServer):
    """UDPServer whose datagrams each run in a greenlet on the serving thread's hub."""


if hasattr(socket, "AF_UNIX"):
    from .servers import UnixDatagramServer, UnixStreamServer

    class GreenletUnixStreamServer(GreenletMixIn, UnixStreamServer):
        """UnixStreamServer whose connections each run in a greenlet on the hub."""

    class GreenletUnixDatagramServer(GreenletMixIn, UnixDatagramServer):
        """UnixDatagramServer whose datagrams each run in a greenlet on the hub."""

    __all__ += ["GreenletUnixStreamServer", "GreenletUnixDatagramServer"]
