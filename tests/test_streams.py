"""The handler streams (``SocketReader``/``SocketWriter``) against the standard library.

Every reader test runs the same calls on ``sock.makefile('rb', bufsize)`` and on
ours (the compiled ``cysocketserver._streams`` and the pure ``_pure_streams``)
over real sockets (socketpair and TCP loopback) and compares results and
exceptions; the writer is compared with ``socketserver._SocketWriter``.
"""
import array
import gc
import glob
import hashlib
import importlib
import importlib.util
import io
import os
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - POSIX only project
    fcntl = termios = None

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
IMPLS = ["compiled", "pure"]
KINDS = ["unix", "tcp"]
MiB = 1024 * 1024


def _load_from_file(modname, pattern):
    paths = sorted(glob.glob(os.path.join(SRC, "cysocketserver", pattern)))
    if not paths:
        return None
    spec = importlib.util.spec_from_file_location(modname, paths[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_streams(impl):
    """The module under test, imported directly (the package may be mid-edit)."""
    modname = "cysocketserver._streams" if impl == "compiled" else "cysocketserver._pure_streams"
    try:
        return importlib.import_module(modname)
    except Exception:
        pass
    if impl == "compiled":
        mod = _load_from_file(modname, "_streams.*.so") or _load_from_file(modname, "_streams.*.pyd")
        if mod is None:
            pytest.skip("the compiled extension cysocketserver._streams is not built")
        return mod
    return _load_from_file(modname, "_pure_streams.py")


@pytest.fixture(params=IMPLS, scope="module")
def streams(request):
    return load_streams(request.param)


# ------------------------------------------------------------------ sockets

def make_pair(kind, small_buffers=False):
    """(receiving side, sending side) of a connected stream."""
    if kind == "unix":
        a, b = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as srv:
            b = socket.create_connection(srv.getsockname())
            a, _ = srv.accept()
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if small_buffers:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    return a, b


def unread_bytes(sock):
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.0005)


def wait_peer_shutdown(sock):
    rdhup = getattr(select, "POLLRDHUP", None)
    if rdhup is None:
        time.sleep(0.05)
        return
    p = select.poll()
    p.register(sock, rdhup)
    end = time.monotonic() + 5
    while not p.poll(10):
        assert time.monotonic() < end, "peer shutdown not seen"


def deliver(rsock, wsock, data, eof):
    """Put all of data (and EOF) in rsock's receive queue before any read."""
    if data:
        wsock.sendall(data)
    if eof:
        wsock.shutdown(socket.SHUT_WR)
    wait_for(lambda: unread_bytes(rsock) >= len(data))
    if eof:
        wait_peer_shutdown(rsock)


def outcome(fn):
    try:
        return ("ok", fn())
    except BaseException as exc:  # noqa: B902 - recording, including StopIteration
        return ("raise", type(exc), exc.args)


def std_reader(sock, bufsize):
    return sock.makefile("rb", bufsize)


# ------------------------------------------------------------------ call sequences

def apply_op(reader, op):
    name, arg = op
    if name == "read":
        return reader.read(arg)
    if name == "read1":
        return reader.read1(arg)
    if name == "readline":
        return reader.readline(arg)
    if name in ("readinto", "readinto1"):
        buf = bytearray(arg)
        n = getattr(reader, name)(buf)
        return n, bytes(buf[: n or 0])
    if name == "readinto_array":  # multi-byte items: counts are bytes
        buf = array.array("i", bytes(4 * arg))
        n = reader.readinto(buf)
        return n, buf.tobytes()[: n or 0]
    if name == "peek":
        return reader.peek(arg)
    if name == "readlines":
        return reader.readlines(arg)
    if name == "next":
        return next(reader)
    if name == "iter":
        lines = []
        for line in reader:
            lines.append(line)
            if len(lines) >= arg:
                break
        return lines
    raise AssertionError(name)


sizes = st.integers(0, 600)
OPS = st.one_of(
    st.tuples(st.just("read"), st.one_of(st.none(), st.just(-1), sizes)),
    st.tuples(st.just("read1"), st.one_of(st.just(-1), sizes)),
    st.tuples(st.just("readline"), st.one_of(st.none(), st.just(-1), st.integers(0, 300))),
    st.tuples(st.sampled_from(["readinto", "readinto1"]), sizes),
    st.tuples(st.just("readinto_array"), st.integers(0, 100)),
    st.tuples(st.just("peek"), st.integers(0, 50)),
    st.tuples(st.just("readlines"), st.one_of(st.none(), st.integers(-1, 300))),
    st.tuples(st.just("next"), st.just(None)),
    st.tuples(st.just("iter"), st.integers(1, 4)),
)
BUFSIZES = st.one_of(st.sampled_from([1, 2, 7, 16, 64, 100, 1024, 8192, -1]), st.integers(1, 300))


def pattern(n, every):
    """n bytes, a newline every `every` bytes (never if every == 0)."""
    chunk = bytes(range(32, 127)) * (n // 95 + 1)
    out = bytearray(chunk[:n])
    if every:
        out[every - 1 :: every] = b"\n" * len(out[every - 1 :: every])
    return bytes(out)


DATA = st.one_of(
    st.lists(st.binary(max_size=90), max_size=50).map(b"\n".join),
    st.builds(pattern, st.integers(0, 40000), st.sampled_from([0, 1, 10, 100, 999, 5000])),
)


def run_sequence(make_reader, kind, data, mode, bufsize, ops):
    """Deliver everything first, then run ops; returns the list of outcomes."""
    rsock, wsock = make_pair(kind)
    try:
        deliver(rsock, wsock, data, eof=mode in ("eof", "nonblocking_eof"))
        if mode == "timeout":
            rsock.settimeout(0.02)
        elif mode.startswith("nonblocking"):
            rsock.setblocking(False)
        reader = make_reader(rsock, bufsize)
        results = [outcome(lambda: apply_op(reader, op)) for op in ops]
        results.append(outcome(lambda: reader.peek()))
        reader.close()
        results.append(outcome(lambda: reader.read()))
        results.append(("refs", rsock._io_refs))
        return results
    finally:
        rsock.close()
        wsock.close()


# ------------------------------------------------------------------ reader: differential

@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=DATA,
    mode=st.sampled_from(["eof", "eof", "timeout", "nonblocking", "nonblocking_eof"]),
    bufsize=BUFSIZES,
    ops=st.lists(OPS, max_size=25),
)
def test_reader_matches_stdlib_exactly(streams, kind, data, mode, bufsize, ops):
    """All data in the socket before reading: every result, read1/peek included, is identical."""
    expected = run_sequence(std_reader, kind, data, mode, bufsize, ops)
    got = run_sequence(streams.SocketReader, kind, data, mode, bufsize, ops)
    assert got == expected


def in_other_thread(fn, *args):
    """fn(*args) run in a new thread (as a ThreadingMixIn handler runs), its result returned."""
    out = []
    worker = threading.Thread(target=lambda: out.append(outcome(lambda: fn(*args))))
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the read hung"
    kind, value = out[0][0], out[0][1:]
    if kind != "ok":
        raise AssertionError(f"run_sequence itself failed: {out[0]}")
    return value[0]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=DATA,
    mode=st.sampled_from(["eof", "timeout", "nonblocking", "nonblocking_eof"]),
    bufsize=BUFSIZES,
    ops=st.lists(OPS, max_size=25),
)
def test_reader_matches_stdlib_in_a_handler_thread(streams, kind, data, mode, bufsize, ops):
    """Outside the main thread a socket without timeout is read with one blocking recv():
    the results must not change."""
    expected = in_other_thread(run_sequence, std_reader, kind, data, mode, bufsize, ops)
    got = in_other_thread(run_sequence, streams.SocketReader, kind, data, mode, bufsize, ops)
    assert got == expected


def test_reader_in_a_thread_waits_for_late_data(streams):
    """A blocking read in a handler thread waits for data sent later, line by line, and
    sees EOF."""
    a, b = socket.socketpair()
    with a, b:
        f = streams.SocketReader(a, 16)

        def send_slowly():
            for part in (b"first li", b"ne\n", b"second line\n"):
                time.sleep(0.05)
                b.sendall(part)
            b.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send_slowly)
        sender.start()
        got = in_other_thread(lambda: [f.readline(), f.readline(), f.readline()])
        sender.join()
        assert got == [b"first line\n", b"second line\n", b""]
        f.close()


@pytest.mark.parametrize("thread", ["main", "handler"])
def test_reader_on_descriptor_made_nonblocking_behind_pythons_back(streams, thread):
    """The socket has no timeout, but its descriptor was made O_NONBLOCK (os.set_blocking,
    fcntl).  The socket's own recv_into() then raises BlockingIOError, which makefile()'s
    reader turns into None or a short result: ours gives the same instead of waiting."""
    results = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with a, b:
            os.set_blocking(a.fileno(), False)
            assert a.gettimeout() is None
            f = make(a, 16)

            def calls():
                seq = [outcome(f.read), outcome(lambda: f.read(5)), outcome(f.read1),
                       outcome(f.peek), outcome(f.readline), outcome(lambda: f.readinto(bytearray(4))),
                       outcome(f.readlines), outcome(lambda: list(f))]
                deliver(a, b, b"abc\ndef", eof=False)
                seq += [outcome(f.readline), outcome(f.readline), outcome(lambda: f.read(50)),
                        outcome(f.read)]
                return seq

            results.append(calls() if thread == "main" else in_other_thread(calls))
            f.close()
    assert results[0] == results[1]
    assert results[1][0] == ("ok", None) and results[1][4] == ("ok", b"")
    assert results[1][8] == ("ok", b"abc\n") and results[1][9] == ("ok", b"def")


def grid_scripts(bs):
    """Short call sequences hitting every branch of the buffering code for buffer size bs."""
    span = range(0, 3 * bs + 3)
    for k in span:
        for first in ("readline", "read", "readinto", "readinto1", "read1"):
            yield [(first, k), ("peek", 0), ("read1", -1), ("read", 3), ("readline", -1)]
            yield [("read", 1), (first, k), ("peek", 0), ("readinto1", bs + 1), ("read", -1)]
        yield [("peek", 0), ("read1", k), ("readline", k), ("readinto", k), ("read", -1)]
        yield [("readline", bs + k), ("readline", bs + k), ("readlines", k), ("read", -1)]


@pytest.mark.parametrize("bufsize", [1, 2, 3, 5, 8, 16])
@pytest.mark.parametrize("every", [0, 4, 19])
def test_reader_matches_stdlib_on_branch_grid(streams, bufsize, every):
    """Deterministic companion of the property test: small buffers, every size near them."""
    data = pattern(300, every)
    for ops in grid_scripts(bufsize):
        expected = run_sequence(std_reader, "unix", data, "eof", bufsize, ops)
        got = run_sequence(streams.SocketReader, "unix", data, "eof", bufsize, ops)
        assert got == expected, ops


class Model:
    """What a blocking reader must return, given the stream so far."""

    def __init__(self, data, bufsize):
        self.data = data
        self.pos = 0
        self.bufsize = bufsize if bufsize > 0 else io.DEFAULT_BUFFER_SIZE

    def take(self, n):
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def line(self, limit=-1):
        end = self.data.find(b"\n", self.pos)
        end = len(self.data) if end < 0 else end + 1
        if limit is not None and limit >= 0:
            end = min(end, self.pos + limit)
        return self.take(end - self.pos)

    def check_partial(self, got, n):
        """read1/readinto1: some of the next n bytes, at least one unless at EOF."""
        rest = self.data[self.pos :]
        if n == 0 or not rest:
            assert got == b""
        else:
            assert 1 <= len(got) <= n
            assert rest.startswith(got)
        self.pos += len(got)

    def apply(self, reader, op):
        name, arg = op
        if name == "read":
            got = reader.read(arg)
            assert got == (self.take(len(self.data)) if arg is None or arg < 0 else self.take(arg))
        elif name == "readline":
            assert reader.readline(arg) == self.line(arg)
        elif name == "readinto":
            buf = bytearray(arg)
            n = reader.readinto(buf)
            expected = self.take(arg)
            assert n == len(expected) and bytes(buf[:n]) == expected
        elif name == "readinto_array":
            buf = array.array("i", bytes(4 * arg))
            n = reader.readinto(buf)
            expected = self.take(4 * arg)
            assert n == len(expected) and buf.tobytes()[:n] == expected
        elif name == "readlines":
            lines, total = [], 0
            while True:
                line = self.line()
                if not line:
                    break
                lines.append(line)
                if arg is not None and arg > 0:
                    if len(line) > arg - total:
                        break
                    total += len(line)
            assert reader.readlines(arg) == lines
        elif name == "next":
            line = self.line()
            if line:
                assert next(reader) == line
            else:
                with pytest.raises(StopIteration):
                    next(reader)
        elif name == "iter":
            expected = []
            for _ in range(arg):
                line = self.line()
                if not line:
                    break
                expected.append(line)
            got = []
            for line in reader:
                got.append(line)
                if len(got) >= arg:
                    break
            assert got == expected
        elif name == "read1":
            got = reader.read1(arg)
            self.check_partial(got, self.bufsize if arg < 0 else arg)
        elif name == "readinto1":
            buf = bytearray(arg)
            n = reader.readinto1(buf)
            self.check_partial(bytes(buf[:n]), arg)
        elif name == "peek":
            got = reader.peek(arg)
            rest = self.data[self.pos :]
            if rest:
                assert 1 <= len(got) <= self.bufsize and rest.startswith(got)
            else:
                assert got == b""
        else:
            raise AssertionError(name)


def trickle(sock, data, chunks, pauses):
    """Send data in the given chunk sizes with short sleeps, then EOF."""
    pos = 0
    for size, pause in zip(chunks, pauses):
        if pos >= len(data):
            break
        sock.sendall(data[pos : pos + size])
        pos += size
        if pause:
            time.sleep(pause)
    sock.sendall(data[pos:])
    sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=DATA,
    bufsize=BUFSIZES,
    ops=st.lists(OPS, max_size=25),
    chunks=st.lists(st.integers(1, 3000), max_size=12),
    pauses=st.lists(st.sampled_from([0, 0, 0.0005, 0.001, 0.002]), min_size=12, max_size=12),
)
def test_reader_streaming_random_timing(streams, kind, data, bufsize, ops, chunks, pauses):
    """Data arriving in random pieces: exact results for the deterministic calls,
    for read1/readinto1/peek the invariants (a non-empty prefix of what is left)."""
    rsock, wsock = make_pair(kind)
    sender = threading.Thread(target=trickle, args=(wsock, data, chunks, pauses))
    sender.start()
    try:
        rsock.settimeout(10)  # a hang is a failure, not a stuck run
        reader = streams.SocketReader(rsock, bufsize)
        model = Model(data, bufsize)
        for op in ops:
            model.apply(reader, op)
        assert reader.read() == data[model.pos :]
        assert reader.read() == b""
        reader.close()
    finally:
        sender.join()
        rsock.close()
        wsock.close()


# ------------------------------------------------------------------ reader: API and errors

def reader_api_calls(f):
    calls = [
        ("tell", f.tell), ("seek", lambda: f.seek(0)), ("seek cur", lambda: f.seek(0, 1)),
        ("seek bad whence", lambda: f.seek(0, 9)), ("truncate", f.truncate),
        ("write", lambda: f.write(b"x")), ("writelines", lambda: f.writelines([b"x"])),
        ("writelines empty", lambda: f.writelines([])), ("flush", f.flush),
        ("read -2", lambda: f.read(-2)), ("read str", lambda: f.read("x")),
        ("read float", lambda: f.read(1.5)), ("read huge", lambda: f.read(2**70)),
        ("read1 None", lambda: f.read1(None)), ("read1 str", lambda: f.read1("x")),
        ("read1 huge", lambda: f.read1(2**70)), ("peek None", lambda: f.peek(None)),
        ("readline str", lambda: f.readline("x")), ("readline huge", lambda: f.readline(2**70)),
        ("readlines str", lambda: f.readlines("x")),
        ("readinto bytes", lambda: f.readinto(b"xx")), ("readinto None", lambda: f.readinto(None)),
        ("readinto1 str", lambda: f.readinto1("xx")),
        ("readinto strided", lambda: f.readinto(memoryview(bytearray(10))[::2])),
        ("read 3", lambda: f.read(3)), ("read1 2", lambda: f.read1(2)), ("peek", f.peek),
        ("readline", f.readline), ("readinto array", lambda: apply_op(f, ("readinto_array", 2))),
        ("readinto1 3", lambda: apply_op(f, ("readinto1", 3))), ("readlines 3", lambda: f.readlines(3)),
        ("next", lambda: next(f)), ("name is fd", lambda: f.name == f.fileno()), ("mode", lambda: f.mode),
        ("closed", lambda: f.closed), ("readable", f.readable), ("writable", f.writable),
        ("seekable", f.seekable), ("isatty", f.isatty), ("iter", lambda: iter(f) is f),
        ("enter", lambda: f.__enter__() is f), ("checkClosed", f._checkClosed),
        ("checkReadable", f._checkReadable),
        ("isinstance", lambda: (isinstance(f, io.BufferedIOBase), isinstance(f, io.IOBase),
                                isinstance(f, io.RawIOBase), isinstance(f, io.TextIOBase))),
        ("public names", lambda: sorted(n for n in dir(f) if not n.startswith("_"))),
        ("close", f.close), ("closed after", lambda: f.closed),
    ]
    for name, call in [
        ("read", f.read), ("read 5", lambda: f.read(5)), ("read 0", lambda: f.read(0)),
        ("read -2", lambda: f.read(-2)), ("read1", lambda: f.read1(5)), ("read1 0", lambda: f.read1(0)),
        ("readline", f.readline), ("readline 0", lambda: f.readline(0)), ("readlines", f.readlines),
        ("readlines 5", lambda: f.readlines(5)), ("readinto", lambda: f.readinto(bytearray(3))),
        ("readinto1", lambda: f.readinto1(bytearray(3))), ("readinto bytes", lambda: f.readinto(b"x")),
        ("peek", f.peek), ("next", lambda: next(f)), ("iter", lambda: iter(f)), ("enter", f.__enter__),
        ("fileno", f.fileno), ("name", lambda: f.name), ("mode", lambda: f.mode),
        ("readable", f.readable), ("writable", f.writable), ("seekable", f.seekable),
        ("isatty", f.isatty), ("flush", f.flush), ("tell", f.tell), ("seek", lambda: f.seek(0)),
        ("truncate", f.truncate), ("write", lambda: f.write(b"x")),
        ("writelines", lambda: f.writelines([b"x"])), ("close again", f.close),
        ("exit", lambda: f.__exit__(None, None, None)), ("checkClosed", f._checkClosed),
        ("raw", lambda: (type(f.raw), f.raw.closed, f.raw.mode, f.raw._sock)),
    ]:
        calls.append(("closed: " + name, call))
    return calls


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bufsize", [1, 16, -1])
def test_reader_api_open_and_closed(streams, kind, bufsize):
    results = {}
    for label, make in (("std", std_reader), ("ours", streams.SocketReader)):
        rsock, wsock = make_pair(kind)
        with rsock, wsock:
            deliver(rsock, wsock, b"hello\nworld\nxyzabc\n" * 3, eof=False)
            f = make(rsock, bufsize)
            results[label] = [(name, outcome(call)) for name, call in reader_api_calls(f)]
            results[label].append(("socket", rsock._io_refs, rsock._closed, rsock.fileno() >= 0))
    assert results["ours"] == results["std"]
    assert ("closed: read", ("raise", ValueError, ("read of closed file",))) in results["ours"]


@pytest.mark.parametrize("touch_raw", [False, True])
def test_reader_raw(streams, touch_raw):
    """.raw is the SocketIO over the socket; closing either side behaves as in io."""
    results = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with b:
            deliver(a, b, b"first line\nsecond line\nthird", eof=False)
            f = make(a, 16)
            seq = [outcome(f.readline)]
            if touch_raw:
                raw = f.raw
                seq.append((type(raw), raw.mode, raw.name == a.fileno(), raw._sock is a,
                            raw.readable(), raw.closed, f.raw is raw))
                a.settimeout(0.05)
                seq += [outcome(lambda: f.read(50)), raw._timeout_occurred,
                        outcome(lambda: raw.read(1)), outcome(f.read1)]
                raw.close()  # behind the reader's back
                seq += [f.closed, outcome(f.peek), outcome(f.read), outcome(f.fileno),
                        outcome(lambda: f.name), outcome(f.readable), outcome(f.close),
                        outcome(f.readline)]
            else:
                seq += [outcome(f.close), f.closed, (type(f.raw), f.raw.closed, f.raw._sock)]
            seq.append(socket_state(a))
            results.append(seq)
            a.close()
    assert results[0] == results[1]
    assert results[1][-1] == (0, False, True)  # released exactly once


def detached_calls(f):
    """Every call on a reader after detach(); BufferedReader refuses nearly all of them."""
    return [
        ("repr", lambda: repr(f).replace(f"{type(f).__module__}.{type(f).__qualname__}", "TYPE")),
        ("closed", lambda: f.closed), ("raw", lambda: f.raw),
        ("read", f.read), ("read 3", lambda: f.read(3)), ("read -2", lambda: f.read(-2)),
        ("read str", lambda: f.read("x")), ("read1", f.read1), ("readline", f.readline),
        ("peek", f.peek), ("next", lambda: next(f)), ("iter", lambda: iter(f)),
        ("readlines", f.readlines), ("readlines 5", lambda: f.readlines(5)),
        ("readinto", lambda: f.readinto(bytearray(2))), ("readinto bytes", lambda: f.readinto(b"x")),
        ("readinto1", lambda: f.readinto1(bytearray(2))), ("fileno", f.fileno),
        ("name", lambda: f.name), ("mode", lambda: f.mode), ("readable", f.readable),
        ("writable", f.writable), ("seekable", f.seekable), ("isatty", f.isatty),
        ("flush", f.flush), ("tell", f.tell), ("seek", lambda: f.seek(0)),
        ("seek bad whence", lambda: f.seek(0, 9)), ("truncate", f.truncate),
        ("write", lambda: f.write(b"x")), ("writelines", lambda: f.writelines([])),
        ("enter", f.__enter__), ("exit", lambda: f.__exit__(None, None, None)),
        ("checkClosed", f._checkClosed), ("close", f.close), ("detach again", f.detach),
    ]


@pytest.mark.parametrize("touch_raw", [False, True])
@pytest.mark.parametrize("state", ["open", "timed out", "closed"])
def test_reader_detach(streams, touch_raw, state):
    """detach() hands over the SocketIO, which then owns the socket's reference."""
    results = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with b:
            deliver(a, b, b"first line\nsecond line\nthird", eof=False)
            f = make(a, 16)
            seq = [outcome(lambda: f.read(3))]
            if touch_raw:
                seq.append(type(f.raw))
            if state == "timed out":
                a.settimeout(0.02)
                seq.append(outcome(f.read))
            elif state == "closed":
                f.close()
            detached = outcome(f.detach)
            seq.append(detached[:1] + ((type(detached[1]), detached[1].closed, detached[1]._sock is a,
                                         detached[1]._timeout_occurred)
                                        if detached[0] == "ok" else detached[1:]))
            seq.append(socket_state(a))
            if detached[0] == "ok":
                raw = detached[1]
                seq += [(name, outcome(call)) for name, call in detached_calls(f)]
                seq += [outcome(lambda: raw.read(100)), socket_state(a)]
                a.close()
                seq.append(socket_state(a))  # the raw SocketIO still holds the socket open
                raw.close()
            else:
                a.close()
            seq.append(socket_state(a))
            del f
            gc.collect()
            results.append(seq)
    assert results[0] == results[1]
    assert results[1][-1] == (0, True, False)


def reader_subclass_over(streams, sock, bufsize, namespace):
    """A subclass of the engine's reader class (io.BufferedReader for the pure engine), over sock."""
    with streams.SocketReader(sock, bufsize) as probe:
        base = type(probe)
    cls = type("Sub", (base,), namespace)
    if base is io.BufferedReader:
        sock._io_refs += 1  # as makefile() does
        return cls(socket.SocketIO(sock, "rb"), bufsize)
    return cls(sock, bufsize)


def std_subclass_over(sock, bufsize, namespace):
    sock._io_refs += 1
    return type("Sub", (io.BufferedReader,), namespace)(socket.SocketIO(sock, "rb"), bufsize)


@pytest.mark.parametrize("returns", ["upper", "str"])
def test_reader_subclass_readline_drives_iteration(streams, returns):
    """As with BufferedReader, iterating a subclass (and readlines()) calls its readline()."""
    def readline(self, size=-1):
        line = super(type(self), self).readline(size)
        return line.upper() if returns == "upper" else line.decode()

    results = []
    for make in (lambda sock: std_subclass_over(sock, 16, {"readline": readline}),
                 lambda sock: reader_subclass_over(streams, sock, 16, {"readline": readline})):
        a, b = socket.socketpair()
        with a, b:
            deliver(a, b, b"one\ntwo\nthree\nfour\nfive\nsix\n", eof=True)
            f = make(a)
            results.append([outcome(lambda: next(f)), outcome(lambda: f.readlines(5)),
                            outcome(lambda: [line for _, line in zip(range(1), f)]),
                            outcome(f.readlines), outcome(lambda: list(f))])
            f.close()
    assert results[0] == results[1]
    if returns == "upper":
        assert results[1][0] == ("ok", b"ONE\n") and results[1][3] == ("ok", [b"FIVE\n", b"SIX\n"])
    else:
        assert results[1][0][1] is OSError


@pytest.mark.parametrize("state", ["open", "closed", "detached"])
def test_reader_repr(streams, state):
    """BufferedReader's repr(): <type name=fd>, or <type> when the name cannot be had.
    Only the type's name differs: the compiled reader is a type of its own."""
    reprs = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with a, b:
            f = make(a, 16)
            fd = a.fileno()
            if state == "closed":
                f.close()
            elif state == "detached":
                f.detach().close()
            type_name = f"{type(f).__module__}.{type(f).__qualname__}"
            text = repr(f).replace(type_name, "TYPE").replace(f"name={fd}>", "name=FD>")
            reprs.append((text, type_name))
            if state == "open":
                f.close()
    assert reprs[0][0] == reprs[1][0]
    assert reprs[1][0] == {"open": "<TYPE name=FD>", "closed": "<TYPE name=-1>", "detached": "<TYPE>"}[state]
    compiled = streams.__name__.endswith("._streams")
    assert reprs[1][1] == ("cysocketserver._streams.SocketReader" if compiled else "_io.BufferedReader")


def test_reader_is_buffered_io(streams):
    a, b = socket.socketpair()
    with a, b:
        with streams.SocketReader(a, 16) as f:
            assert isinstance(f, io.BufferedIOBase)
            assert f.readable() and not f.writable() and not f.seekable()
            assert f.mode == "rb" and f.name == a.fileno() == f.fileno()
        assert f.closed


def test_compiled_reader_refuses_unbuffered():
    mod = load_streams("compiled")
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError):
            mod.SocketReader(a, 0)
        assert a._io_refs == 0


def socket_state(sock):
    return sock._io_refs, sock._closed, sock.fileno() >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_reader_keeps_socket_open_until_closed(streams, kind):
    """request.close() while rfile is open must not close the fd (SocketIO refcount)."""
    for make in (std_reader, streams.SocketReader):
        rsock, wsock = make_pair(kind)
        with wsock:
            f = make(rsock, 16)
            assert socket_state(rsock) == (1, False, True)
            rsock.close()  # what shutdown_request() does
            assert socket_state(rsock) == (1, True, True)
            wsock.sendall(b"still there\n")
            assert f.readline() == b"still there\n"
            f.close()
            assert socket_state(rsock) == (0, True, False)


def test_reader_garbage_collected_releases_socket(streams):
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with b:
            f = make(a, 16)
            a.close()
            assert a.fileno() >= 0
            del f
            gc.collect()
            assert a.fileno() == -1


def test_reader_eof(streams):
    for kind in KINDS:
        for make in (std_reader, streams.SocketReader):
            rsock, wsock = make_pair(kind)
            with rsock, wsock:
                deliver(rsock, wsock, b"last", eof=True)
                f = make(rsock, 16)
                assert f.readline() == b"last"
                assert f.read() == b"" and f.read(5) == b"" and f.read1() == b""
                assert f.readline() == b"" and f.peek() == b"" and f.readinto(bytearray(4)) == 0
                assert list(f) == [] and f.readlines() == []
                with pytest.raises(StopIteration):
                    next(f)


def test_reader_peer_reset(streams):
    """RST from the peer (SO_LINGER 0): the same exception, then the same EOF."""
    results = []
    for make in (std_reader, streams.SocketReader):
        rsock, wsock = make_pair("tcp")
        with rsock:
            f = make(rsock, 16)
            wsock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            wsock.close()
            time.sleep(0.05)
            results.append([outcome(f.readline), outcome(f.read), outcome(lambda: f.read(3))])
    assert results[0] == results[1]
    assert results[1][0][1] is ConnectionResetError


def test_reader_closed_fd_gives_ebadf(streams):
    """The socket's fd closed behind the reader's back: OSError(EBADF), as SocketIO gives."""
    results = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with b:
            f = make(a, 16)
            os.close(a.detach())
            results.append([outcome(f.read1), outcome(f.readline), outcome(f.fileno), outcome(lambda: f.name)])
            f.close()
    assert results[0] == results[1]
    assert results[1][0][1] is OSError and results[1][0][2][0] == 9


@pytest.mark.parametrize("kind", KINDS)
def test_reader_timeout(streams, kind):
    """No data: TimeoutError('timed out') after the timeout, then every raw read is
    refused with OSError('cannot read from timed out object'); buffered data still reads."""
    results = []
    for make in (std_reader, streams.SocketReader):
        rsock, wsock = make_pair(kind)
        with rsock, wsock:
            rsock.settimeout(0.1)
            deliver(rsock, wsock, b"0123456789ab", eof=False)
            f = make(rsock, 8)
            first = f.read(4)  # buffers 8 bytes
            t0 = time.monotonic()
            seq = [first, outcome(lambda: f.read(100))]
            elapsed = time.monotonic() - t0
            assert 0.08 <= elapsed < 3
            wsock.sendall(b"more\n")
            time.sleep(0.01)
            seq += [outcome(f.peek), outcome(f.readline), outcome(f.read1), outcome(f.read),
                    outcome(lambda: f.readinto(bytearray(3))), outcome(lambda: f.read(0))]
            results.append(seq)
            f.close()
    assert results[0] == results[1]
    assert results[1][1] == ("raise", TimeoutError, ("timed out",))
    assert results[1][3] == ("raise", OSError, ("cannot read from timed out object",))


def test_reader_timeout_keeps_buffered_data(streams):
    results = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(0.05)
            f = make(a, 64)
            deliver(a, b, b"line one\nline two\npartial", eof=False)
            results.append([outcome(f.readline), outcome(f.readline), outcome(f.readline),
                            outcome(f.read), outcome(lambda: f.read(0))])
    assert results[0] == results[1]
    assert results[1][0] == ("ok", b"line one\n") and results[1][1] == ("ok", b"line two\n")
    assert results[1][2][1] is TimeoutError


def test_reader_nonblocking(streams):
    results = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            f = make(a, 16)
            seq = [outcome(f.read), outcome(lambda: f.read(5)), outcome(f.read1), outcome(f.peek),
                   outcome(f.readline), outcome(lambda: f.readinto(bytearray(5))), outcome(f.readlines)]
            deliver(a, b, b"abc\ndef", eof=False)
            seq += [outcome(f.readline), outcome(f.readline), outcome(lambda: f.read(50)), outcome(f.read)]
            results.append(seq)
    assert results[0] == results[1]
    assert results[1][0] == ("ok", None) and results[1][1] == ("ok", None)
    assert results[1][7] == ("ok", b"abc\n")


@pytest.mark.parametrize("kind", KINDS)
def test_readline_limit_on_huge_line(streams, kind):
    """readline(limit) on an endless line returns exactly limit bytes at once, reading
    at most a buffer beyond it: the sender is still blocked when it returns."""
    total, limit, bufsize = 4 * MiB, 10000, 4096
    rsock, wsock = make_pair(kind, small_buffers=True)
    sender = threading.Thread(target=wsock.sendall, args=(b"x" * total,))
    sender.start()
    try:
        rsock.settimeout(10)
        f = streams.SocketReader(rsock, bufsize)
        line = f.readline(limit)
        assert line == b"x" * limit
        assert sender.is_alive(), "the whole stream was read to serve readline(limit)"
        assert len(f.peek()) <= bufsize
        rest = f.read(total - limit)
        assert rest == b"x" * (total - limit)
        f.close()
    finally:
        sender.join()
        rsock.close()
        wsock.close()


def test_reader_signal_during_blocked_read(streams):
    """EINTR while waiting: the handler runs, the read resumes and loses nothing;
    a handler that raises aborts the read with its exception."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    hits = []

    class Boom(Exception):
        pass

    def handler(signum, frame):
        hits.append(signum)
        if raise_in_handler:
            raise Boom

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        for raise_in_handler in (False, True):
            a, b = socket.socketpair()
            main = threading.get_ident()

            def poke(count=1 if raise_in_handler else 3):
                for _ in range(count):
                    time.sleep(0.05)
                    signal.pthread_kill(main, signal.SIGUSR1)
                time.sleep(0.05)
                b.sendall(b"payload\n")

            t = threading.Thread(target=poke)
            with a, b:
                f = streams.SocketReader(a, 16)
                hits.clear()
                t.start()
                try:
                    if raise_in_handler:
                        with pytest.raises(Boom):
                            f.readline()
                        assert len(hits) == 1
                    else:
                        assert f.readline() == b"payload\n"
                        assert len(hits) == 3
                finally:
                    t.join()
                if raise_in_handler:
                    assert f.readline() == b"payload\n"
                f.close()
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_reader_reentrant_call_from_signal_handler(streams):
    """A signal handler reading from the reader that is blocked: RuntimeError, as in io."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    results = []
    for make in (std_reader, streams.SocketReader):
        a, b = socket.socketpair()
        main = threading.get_ident()
        f = make(a, 16)
        old = signal.signal(signal.SIGUSR1, lambda *args: f.read(1))
        t = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGUSR1))
        try:
            t.start()
            a.settimeout(2)
            results.append(outcome(f.read1)[:2])
        finally:
            t.join()
            signal.signal(signal.SIGUSR1, old)
            f.close()
            a.close()
            b.close()
    assert results[0] == results[1] == ("raise", RuntimeError)


def test_reader_releases_gil_while_waiting(streams):
    """While one thread waits for data, another keeps running (no long GIL hold)."""
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.3)
        f = streams.SocketReader(a, 16)
        out = []
        t = threading.Thread(target=lambda: out.append(outcome(f.read1)))
        stamps = [time.monotonic()]
        t.start()
        while t.is_alive():
            time.sleep(0.001)
            stamps.append(time.monotonic())
        t.join()
        assert out[0][1] is TimeoutError
        gaps = [y - x for x, y in zip(stamps, stamps[1:])]
        assert stamps[-1] - stamps[0] >= 0.25
        assert max(gaps) < 0.15, f"main thread starved for {max(gaps):.3f}s"


def test_reader_close_waits_for_blocked_read(streams):
    """close() from another thread waits for an in-progress read (no use after free)."""
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(5)
        f = streams.SocketReader(a, 16)
        got = []
        reader = threading.Thread(target=lambda: got.append(f.read(5)))
        reader.start()
        time.sleep(0.05)
        closer = threading.Thread(target=f.close)
        closer.start()
        time.sleep(0.05)
        b.sendall(b"12345")
        reader.join(5)
        closer.join(5)
        assert got == [b"12345"] and f.closed


def test_reader_concurrent_readers_share_stream(streams):
    a, b = socket.socketpair()
    lines = [b"%06d\n" % i for i in range(3000)]
    with a, b:
        f = streams.SocketReader(a, 7)
        got = [[], []]

        def consume(k):
            for line in f:
                got[k].append(line)

        ts = [threading.Thread(target=consume, args=(k,)) for k in (0, 1)]
        for t in ts:
            t.start()
        b.sendall(b"".join(lines))
        b.shutdown(socket.SHUT_WR)
        for t in ts:
            t.join(10)
        assert sorted(got[0] + got[1]) == lines


class TracingSocket(socket.socket):
    """A socket.socket subclass overriding I/O, as ssl.SSLSocket does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def recv_into(self, buf, *args):
        self.calls.append("recv_into")
        return super().recv_into(buf, *args)

    def sendall(self, data, *args):
        self.calls.append("sendall")
        return super().sendall(data, *args)


def test_overridden_socket_methods_are_used(streams):
    """Wrapped sockets (e.g. SSL) must be read and written through their methods."""
    results = []
    for make_r, make_w in ((std_reader, socketserver._SocketWriter),
                           (streams.SocketReader, streams.SocketWriter)):
        a0, b0 = socket.socketpair()
        a = TracingSocket(fileno=a0.detach())
        b = TracingSocket(fileno=b0.detach())
        with a, b:
            w = make_w(b)
            assert w.write(b"one\ntwo\n" * 10) == 80
            b.shutdown(socket.SHUT_WR)
            f = make_r(a, 16)
            results.append((f.readline(), f.read1(5), f.read(), "recv_into" in a.calls, b.calls))
            f.close()
    assert results[0] == results[1]
    assert results[1][3] and results[1][4] == ["sendall"]


# ------------------------------------------------------------------ writer

def writer_api_calls(w):
    common = [
        ("write bytes", lambda: w.write(b"abc")), ("write bytearray", lambda: w.write(bytearray(b"de"))),
        ("write array i", lambda: w.write(array.array("i", [1, 2, 3]))),
        ("write memoryview d", lambda: w.write(memoryview(array.array("d", [1.5, 2.5])))),
        ("write cast", lambda: w.write(memoryview(bytearray(b"abcdefgh")).cast("I"))),
        ("write 2d", lambda: w.write(memoryview(bytearray(12)).cast("B", (3, 4)))),
        ("write empty", lambda: w.write(b"")), ("write str", lambda: w.write("abc")),
        ("write int", lambda: w.write(5)), ("write None", lambda: w.write(None)),
        ("write strided", lambda: w.write(memoryview(b"abcdef")[::2])),
        ("writelines", lambda: w.writelines([b"x", bytearray(b"yy")])),
        ("writelines str", lambda: w.writelines(["x"])),
        ("read", w.read), ("read 5", lambda: w.read(5)), ("read1", w.read1),
        ("readinto", lambda: w.readinto(bytearray(3))), ("readinto bytes", lambda: w.readinto(b"x")),
        ("readinto1", lambda: w.readinto1(bytearray(3))), ("readline", w.readline),
        ("readline 0", lambda: w.readline(0)), ("readline 5", lambda: w.readline(5)),
        ("readlines", w.readlines), ("next", lambda: next(w)), ("iter", lambda: iter(w) is w),
        ("enter", lambda: w.__enter__() is w), ("flush", w.flush), ("tell", w.tell),
        ("seek", lambda: w.seek(0)), ("truncate", w.truncate), ("detach", w.detach),
        ("fileno is socket's", lambda: w.fileno() == w._sock.fileno()),
        ("readable", w.readable), ("writable", w.writable), ("seekable", w.seekable),
        ("isatty", w.isatty), ("closed", lambda: w.closed), ("checkClosed", w._checkClosed),
        ("checkWritable", w._checkWritable), ("checkReadable", w._checkReadable),
        ("has name", lambda: hasattr(w, "name")), ("has peek", lambda: hasattr(w, "peek")),
        ("isinstance", lambda: (isinstance(w, io.BufferedIOBase), isinstance(w, io.IOBase))),
    ]
    return common + [("close", w.close)] + [("closed: " + n, c) for n, c in common] + [
        ("exit", lambda: w.__exit__(None, None, None))]


@pytest.mark.parametrize("kind", KINDS)
def test_writer_api_matches_stdlib(streams, kind):
    results = {}
    for label, make in (("std", socketserver._SocketWriter), ("ours", streams.SocketWriter)):
        rsock, wsock = make_pair(kind)
        with rsock, wsock:
            w = make(wsock)
            calls = [(name, outcome(call)) for name, call in writer_api_calls(w)]
            wsock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := rsock.recv(65536):
                received += chunk
            wsock.close()  # the writer never owned it
            after = [outcome(lambda: w.write(b"x")), outcome(lambda: w.write(b""))]
            results[label] = (calls, received, after)
    assert results["ours"] == results["std"]
    calls = dict(results["ours"][0])
    assert calls["write array i"] == ("ok", 12) and calls["write memoryview d"] == ("ok", 16)
    assert results["ours"][2][0][1] is OSError and results["ours"][2][0][2][0] == 9


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [1, 65536, 3 * MiB + 7])
def test_writer_large_write(streams, kind, size):
    rsock, wsock = make_pair(kind)
    payload = os.urandom(1024) * (size // 1024) + os.urandom(size % 1024)
    digest = []

    def drain():
        h, n = hashlib.sha256(), 0
        while chunk := rsock.recv(1 << 16):
            h.update(chunk)
            n += len(chunk)
        digest.append((n, h.hexdigest()))

    t = threading.Thread(target=drain)
    t.start()
    try:
        w = streams.SocketWriter(wsock)
        view = memoryview(payload)
        assert w.write(view) == size
        if size % 4 == 0:
            assert w.write(view.cast("i")) == size
            expected = payload + payload
        else:
            expected = payload
        wsock.shutdown(socket.SHUT_WR)
        t.join(30)
        assert digest == [(len(expected), hashlib.sha256(expected).hexdigest())]
    finally:
        t.join()
        rsock.close()
        wsock.close()


def test_writer_peer_closed_unix(streams):
    results = []
    for make in (socketserver._SocketWriter, streams.SocketWriter):
        a, b = socket.socketpair()
        with a:
            b.close()
            w = make(a)
            results.append([outcome(lambda: w.write(b"x")), outcome(lambda: w.write(b"y" * 100000))])
    assert results[0] == results[1]
    assert results[1][0][1] is BrokenPipeError


def test_writer_peer_closed_tcp(streams):
    for make in (socketserver._SocketWriter, streams.SocketWriter):
        rsock, wsock = make_pair("tcp")
        with wsock:
            rsock.close()
            w = make(wsock)
            with pytest.raises((BrokenPipeError, ConnectionResetError)) as info:
                for _ in range(1000):
                    w.write(b"z" * 1000)
                    time.sleep(0.001)
            assert info.value.errno in (32, 104) or info.value.errno > 0


@pytest.mark.parametrize("kind", KINDS)
def test_writer_timeout(streams, kind):
    """The peer never reads: TimeoutError('timed out') once the timeout has elapsed."""
    rsock, wsock = make_pair(kind, small_buffers=True)
    with rsock, wsock:
        wsock.settimeout(0.2)
        w = streams.SocketWriter(wsock)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            w.write(b"\0" * (16 * MiB))
        elapsed = time.monotonic() - t0
        assert info.value.args == ("timed out",)
        assert 0.15 <= elapsed < 3


@pytest.mark.parametrize("thread", ["main", "handler"])
def test_writer_on_descriptor_made_nonblocking_behind_pythons_back(streams, thread):
    """No timeout, but an O_NONBLOCK descriptor: the socket's sendall() raises
    BlockingIOError once the send buffer is full; so does ours instead of waiting."""
    results = []
    for make in (socketserver._SocketWriter, streams.SocketWriter):
        a, b = socket.socketpair()
        with a, b:
            os.set_blocking(b.fileno(), False)
            w = make(b)

            def write():
                return outcome(lambda: w.write(b"\0" * (16 * MiB)))

            results.append(write() if thread == "main" else in_other_thread(write))
    assert results[0] == results[1]
    assert results[1][1] is BlockingIOError


def test_writer_nonblocking(streams):
    results = []
    for make in (socketserver._SocketWriter, streams.SocketWriter):
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(False)
            results.append(outcome(lambda: make(b).write(b"\0" * (16 * MiB))))
    assert results[0] == results[1]
    assert results[1][1] is BlockingIOError


def test_writer_releases_gil_while_waiting(streams):
    rsock, wsock = make_pair("unix", small_buffers=True)
    with rsock, wsock:
        wsock.settimeout(0.3)
        w = streams.SocketWriter(wsock)
        out = []
        t = threading.Thread(target=lambda: out.append(outcome(lambda: w.write(b"\0" * (8 * MiB)))))
        stamps = [time.monotonic()]
        t.start()
        while t.is_alive():
            time.sleep(0.001)
            stamps.append(time.monotonic())
        t.join()
        assert out[0][1] is TimeoutError
        gaps = [y - x for x, y in zip(stamps, stamps[1:])]
        assert max(gaps) < 0.15, f"main thread starved for {max(gaps):.3f}s"


@pytest.mark.parametrize("handler_raises", [False, True])
def test_writer_signal_during_big_write(streams, handler_raises):
    """CPython's SocketWriterTest.test_write: SIGUSR1 hits the thread blocked in a
    16 MiB write(); every byte must still arrive (or the handler's exception propagates)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    size = 16 * MiB
    interrupted = threading.Event()

    class Boom(Exception):
        pass

    def handler(signum, frame):
        interrupted.set()
        if handler_raises:
            raise Boom

    old = signal.signal(signal.SIGUSR1, handler)
    a, b = socket.socketpair()
    main = threading.get_ident()
    received = []
    signals_sent = []

    def client():
        n = len(a.recv(100))
        while True:  # the writer is now blocked (16 MiB > socket buffers)
            signal.pthread_kill(main, signal.SIGUSR1)
            signals_sent.append(1)
            if interrupted.wait(timeout=1.0):
                break
        while chunk := a.recv(1 << 16):
            n += len(chunk)
        received.append(n)

    t = threading.Thread(target=client)
    try:
        w = streams.SocketWriter(b)
        t.start()
        if handler_raises:
            with pytest.raises(Boom):
                w.write(b"\0" * size)
        else:
            assert w.write(b"\0" * size) == size
        b.shutdown(socket.SHUT_WR)
        t.join(30)
        assert interrupted.is_set()
        if streams.__name__ == "cysocketserver._streams" and sys.platform.startswith("linux"):
            # ppoll() with signals blocked until the wait: no signal is ever left
            # pending while the writer sleeps, so the first one is handled.
            assert len(signals_sent) == 1
        if handler_raises:
            assert 0 < received[0] < size
        else:
            assert received == [size]
    finally:
        signal.signal(signal.SIGUSR1, old)
        t.join()
        a.close()
        b.close()
