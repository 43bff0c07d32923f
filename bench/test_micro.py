"""Micro-benchmarks of a handler's streams: rfile.readline / read / iteration, wfile.write.

The compiled streams (``cysocketserver._streams``, what StreamRequestHandler gets) against the
stdlib's (``sock.makefile('rb')`` and ``socketserver._SocketWriter``), and the pure-Python
twins (``cysocketserver._pure_streams``) where they exist, over a connected pair of loopback
TCP sockets — the kind of socket a handler has.  Each round moves 1000 lines of 64 bytes;
the other end is filled (or emptied) outside the timed part.

Not part of the test suite; needs pytest-benchmark:

    python -m pip install '.[bench]'      # or just pytest-benchmark
    python -m pytest bench/test_micro.py
    python -m pytest bench/test_micro.py --benchmark-group-by=func --benchmark-columns=min,median,ops
"""
import importlib
import itertools
import socket
import socketserver

import pytest

pytest.importorskip("pytest_benchmark")

LINES = 1000
LINE = b"x" * 63 + b"\n"
PAYLOAD = LINE * LINES
ROUNDS = 300

ENGINES = ["stdlib", "compiled", "pure"]


def streams(engine):
    """(reader factory, writer factory) of an engine; skips the engines that are not built."""
    if engine == "stdlib":
        return (lambda sock: sock.makefile("rb", -1)), socketserver._SocketWriter
    module = {"compiled": "cysocketserver._streams", "pure": "cysocketserver._pure_streams"}
    try:
        mod = importlib.import_module(module[engine])
    except ImportError as exc:
        pytest.skip(f"{module[engine]} is not available: {exc}")
    return (lambda sock: mod.SocketReader(sock, -1)), mod.SocketWriter


@pytest.fixture
def pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    yield near, far
    near.close()
    far.close()


def fill(sock):
    sock.sendall(PAYLOAD)


def drain(sock):
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def run_reading(benchmark, pair, engine, read_all):
    near, far = pair
    reader = streams(engine)[0](near)
    got = []

    def target():
        got.append(read_all(reader))

    benchmark.pedantic(target, setup=lambda: fill(far), rounds=ROUNDS, warmup_rounds=5)
    assert all(n == len(PAYLOAD) for n in got)
    reader.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_readline(benchmark, pair, engine):
    def read_all(reader):
        readline = reader.readline
        return sum(len(readline()) for _ in range(LINES))

    run_reading(benchmark, pair, engine, read_all)


@pytest.mark.parametrize("engine", ENGINES)
def test_iteration(benchmark, pair, engine):
    def read_all(reader):
        return sum(len(line) for line in itertools.islice(reader, LINES))

    run_reading(benchmark, pair, engine, read_all)


@pytest.mark.parametrize("engine", ENGINES)
def test_read_fixed(benchmark, pair, engine):
    def read_all(reader):
        read = reader.read
        return sum(len(read(64)) for _ in range(LINES))

    run_reading(benchmark, pair, engine, read_all)


@pytest.mark.parametrize("engine", ENGINES)
def test_read_block(benchmark, pair, engine):
    def read_all(reader):
        return len(reader.read(len(PAYLOAD)))

    run_reading(benchmark, pair, engine, read_all)


@pytest.mark.parametrize("engine", ENGINES)
def test_write(benchmark, pair, engine):
    near, far = pair
    writer = streams(engine)[1](near)

    def target():
        write = writer.write
        for _ in range(LINES):
            write(LINE)

    benchmark.pedantic(target, setup=lambda: drain(far), rounds=ROUNDS, warmup_rounds=5)
    writer.close()
