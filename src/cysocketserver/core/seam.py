"""The seam between the Python layer and an engine, written down once.

An engine (the compiled modules, or their pure-Python twins) provides exactly ``Engine``'s
names and nothing else is used from it; ``_engine`` picks one.  The policy that decides what
the engine does lives in ``core`` (``core.plan`` above all); the engine is mechanism only.
"""
from typing import Any, Callable, ClassVar, Optional, Protocol, Tuple

__all__ = ["Waiter", "ServeLoop", "SocketReader", "SocketWriter", "Hub", "ProxyParser", "Model",
           "Meter", "Counters", "Engine"]

from .._loopcommon import LISTENER_READY, WOKEN


class Waiter(Protocol):
    """Waits for the listener and for wake-ups: the engine's poller (the GIL released while it
    waits) or, for the greenlet servers, the thread's hub."""

    def set_listener(self, fd: int, exclusive: bool = False) -> None:
        """Wait for ``fd`` from now on; ``exclusive``: with an exclusive wake-up (the plan's
        ``exclusive``), so that of the processes waiting for it, one wakes."""
    def watch(self) -> None: ...
    def unwatch(self) -> None: ...
    def wait(self, timeout: Optional[float]) -> int:
        """LISTENER_READY and/or WOKEN; 0 when the timeout passed.  May return early."""
    def wake(self) -> None:
        """From any thread: make a wait() return."""
    def close(self) -> None: ...


class ServeLoop(Protocol):
    """One per server.  Reads a ``core.plan.Plan``; calls only what the plan holds."""

    def __init__(self, waiter: Optional[Waiter] = None) -> None: ...
    def serve_forever(self, plan: Any, poll_interval: Optional[float]) -> None: ...
    def handle_request(self, plan: Any, timeout: Optional[float]) -> Any: ...
    def shutdown(self) -> None:
        """Ask the running serve_forever() to return and wait until it has."""
    def request_shutdown(self, requested: bool = True) -> None:
        """Ask, without waiting; any thread."""
    @property
    def shutdown_requested(self) -> bool: ...
    @property
    def stopped(self) -> bool:
        """True while no serve_forever() is running."""
    def pause_accepting(self) -> None:
        """Stop watching the listener until resume_accepting(); the serving thread."""
    def resume_accepting(self) -> None:
        """Any thread."""
    def back_off(self, seconds: float) -> None:
        """Leave the listener alone for ``seconds`` (accept ran out of resources)."""
    def close(self) -> None: ...


class SocketReader(Protocol):
    """What ``sock.makefile('rb', buffer_size)`` returns, byte for byte and error for error;
    the bytes it receives are added to ``meter.received`` when given a meter."""

    def __init__(self, sock: Any, buffer_size: int, meter: Optional["Meter"] = None) -> None: ...


class SocketWriter(Protocol):
    """StreamRequestHandler's unbuffered ``wfile``: ``write()`` sends every byte (added to
    ``meter.sent``)."""

    def __init__(self, sock: Any, meter: Optional["Meter"] = None) -> None: ...


class Meter(Protocol):
    """The bytes one connection has moved; the streams add to it."""

    received: int
    sent: int


class Counters(Protocol):
    """A server's totals.  Each update is atomic: handler threads call them concurrently.

    One read-only total per field declared in ``_counterfields``, an attribute of its name;
    ``FIELDS`` names them in order.  ``Counters(buffer=None)``: with a buffer (writable,
    C-contiguous, 8-byte aligned, at least ``SIZE`` bytes, e.g. a slice of a shared anonymous
    mmap) the totals live there as native unsigned 64-bit integers in ``FIELDS`` order, and its
    current values are the starting totals.  One process writes a buffer; others may read it
    (cast("Q")) as it changes.  ``connections_total - connections_closed_total`` is the number
    of open connections (read the closed count first: a connection is counted open before it
    is counted closed)."""

    FIELDS: ClassVar[Tuple[str, ...]]
    SIZE: ClassVar[int]

    def __getattr__(self, field: str) -> int:
        """The total of ``field``, one of ``FIELDS``."""

    def connection_opened(self) -> None: ...
    def connection_rejected(self) -> None: ...
    def handler_error(self) -> None: ...
    def accept_error(self) -> None: ...
    def idle_closed(self, count: int = 1) -> None: ...
    def drained(self, finished: int, cut: int) -> None: ...
    def fold(self, meter: Meter) -> None:
        """A connection has ended (once each): count it and add its bytes to the totals."""


class Hub(Protocol):
    """The greenlet servers' event loop, one per thread (``_pure_hub`` documents it)."""

    thread_ident: int

    def wait_fd(self, fd: int, events: int, deadline: float) -> bool: ...
    def forget_fd(self, fd: int) -> None: ...
    def set_exclusive(self, fd: int) -> None:
        """Wait for reading ``fd`` with an exclusive wake-up (EPOLLEXCLUSIVE; where the hub has
        no epoll, the ordinary way) until ``forget_fd(fd)``."""
    def park(self) -> Any: ...
    def wake(self, glet: Any, value: Any = None) -> None: ...
    def wake_threadsafe(self, glet: Any) -> None: ...
    def spawn(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def kill(self, glet: Any, exc: Any = None) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def close(self) -> None: ...


class ProxyParser(Protocol):
    """The PROXY protocol parser (``_proxyproto`` documents it); ``accepted`` is a mask of
    ``_proxycommon.V1``/``V2``."""

    def scan(self, data: bytes, accepted: int) -> int: ...
    def parse(self, header: bytes, accepted: int) -> Any: ...
    def crc32c(self, data: bytes) -> int: ...


class Model(Protocol):
    """A concurrency model (``models``)."""

    batch: int
    request_class: type
    cooperative: bool

    name: str
    keeps_connections: bool   # False: the guards cannot act on its connections (forks)

    def attach(self, loop: ServeLoop) -> None: ...
    def can_take(self) -> bool: ...
    def start(self, target: Callable[[Any, Any], None], request: Any, client_address: Any) -> None: ...
    def nap(self, seconds: float) -> None:
        """Wait while the handlers run (server_close()'s drain)."""
    def stats(self) -> dict: ...
    def close(self, block: bool) -> None: ...


class Engine(Protocol):
    name: str
    ServeLoop: type
    SocketReader: type
    SocketWriter: type
    Hub: type
    Counters: type
    Meter: type
    proxyproto: ProxyParser
