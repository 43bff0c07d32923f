"""The engine's Counters: private totals, or totals in a shared buffer that another process reads.

A prefork parent gives each worker a slot of an anonymous shared mmap; the worker's Counters
writes its totals there and the parent reads them, exactly and at once, even after the worker
was killed.  Both engines, one run.
"""
import array
import mmap
import os
import signal
import struct
import threading

import pytest

from support_net import HAVE_FORK, HOST, TIMEOUT, connect, serving, wait_for


@pytest.fixture
def engine_counters(engine):
    from cysocketserver import _engine

    loaded = _engine.load(engine)
    return loaded.Counters, loaded.Meter


@pytest.fixture
def shared():
    """An anonymous shared mapping, as a prefork parent makes before forking."""
    area = mmap.mmap(-1, mmap.PAGESIZE)
    yield area
    try:
        area.close()
    except BufferError:
        pass  # a failed test's traceback still holds a view; the mapping goes with it


def _totals(counters, fields):
    return [getattr(counters, name) for name in fields]


def _meter(meter_class, received, sent):
    meter = meter_class()
    meter.received = received
    meter.sent = sent
    return meter


def _bump_once_each(counters, meter):
    counters.connection_opened()
    counters.connection_rejected()
    counters.handler_error()
    counters.accept_error()
    counters.idle_closed(3)
    counters.drained(4, 5)
    counters.fold(meter)


def test_layout_is_the_documented_one(engine_counters):
    Counters, _ = engine_counters
    assert Counters.FIELDS == (
        "connections_total", "connections_closed_total", "connections_rejected_total",
        "handler_errors_total", "accept_errors_total", "idle_closed_total",
        "drain_finished_total", "drain_cut_total", "bytes_received_closed", "bytes_sent_closed")
    assert Counters.SIZE == 8 * len(Counters.FIELDS) == struct.calcsize("%dQ" % len(Counters.FIELDS))


def test_both_engines_share_one_layout():
    from cysocketserver import _engine

    if not _engine.available("compiled"):
        pytest.skip("the compiled engine is not built in this install")
    compiled, pure = _engine.load("compiled").Counters, _engine.load("python").Counters
    assert (compiled.FIELDS, compiled.SIZE) == (pure.FIELDS, pure.SIZE)
    # What one engine writes, the other reads.
    area = bytearray(compiled.SIZE)
    _bump_once_each(compiled(area), _engine.load("compiled").Meter())
    assert _totals(pure(area), pure.FIELDS) == list(memoryview(area).cast("Q"))


def _total_attributes(counters_class):
    return [name for name in dir(counters_class) if not name.startswith("_")
            and name not in ("FIELDS", "SIZE") and not callable(getattr(counters_class, name))]


def test_the_counters_are_exactly_the_declared_fields(engine_counters):
    from cysocketserver._counterfields import FIELDS

    Counters, _ = engine_counters
    assert Counters.FIELDS == FIELDS
    assert sorted(_total_attributes(Counters)) == sorted(FIELDS)
    # Each attribute reads its own cell, in the declared order.
    area = bytearray(Counters.SIZE)
    memoryview(area).cast("Q")[:] = array.array("Q", range(100, 100 + len(FIELDS)))
    counters = Counters(area)
    assert [getattr(counters, name) for name in FIELDS] == list(range(100, 100 + len(FIELDS)))
    del counters


def _count_each_differently(counters, meter_class):
    counters.connection_opened()
    for _ in range(2):
        counters.connection_rejected()
    for _ in range(3):
        counters.handler_error()
    for _ in range(4):
        counters.accept_error()
    counters.idle_closed(5)
    counters.drained(6, 7)
    counters.fold(_meter(meter_class, 8, 9))


def test_stats_and_prometheus_show_every_declared_field(cy_ss):
    from cysocketserver._counterfields import DECLARED
    from cysocketserver.metrics import prometheus_text

    server = cy_ss.ThreadingTCPServer((HOST, 0), cy_ss.StreamRequestHandler)
    try:
        counters = server._connection_registry.counters
        _count_each_differently(counters, cy_ss._engine.current().Meter)
        stats = server.stats()
        text = prometheus_text({"s": server})
    finally:
        server.server_close()
    reported = [field for field in DECLARED if field.key is not None]
    # Only the closed count is left out: stats() counts the live connections themselves.
    assert [field.name for field in DECLARED if field.key is None] == ["connections_closed_total"]
    for field in reported:
        assert stats[field.key] == getattr(counters, field.name) > 0, field
        labels = '{server="s"%s}' % (',%s="%s"' % field.label if field.label else "")
        assert "\n%s%s %d\n" % (field.metric, labels, stats[field.key]) in text, field
        assert "# TYPE %s counter" % field.metric in text


def test_private_totals_start_at_zero_and_count(engine_counters):
    Counters, Meter = engine_counters
    counters = Counters()
    assert _totals(counters, Counters.FIELDS) == [0] * len(Counters.FIELDS)
    _bump_once_each(counters, _meter(Meter, 10, 20))
    counters.fold(_meter(Meter, 1, 2))
    assert _totals(counters, Counters.FIELDS) == [1, 2, 1, 1, 1, 3, 4, 5, 11, 22]
    # Two servers' counters are apart.
    assert Counters().connections_total == 0


def test_totals_are_read_only(engine_counters):
    Counters, _ = engine_counters
    counters = Counters()
    for name in Counters.FIELDS:
        with pytest.raises(AttributeError):
            setattr(counters, name, 5)


def test_buffer_holds_the_totals_in_field_order(engine_counters, shared):
    Counters, Meter = engine_counters
    slot = memoryview(shared)[Counters.SIZE:2 * Counters.SIZE]  # the second slot
    counters = Counters(slot)
    _bump_once_each(counters, _meter(Meter, 10, 20))
    cells = list(slot.cast("Q"))
    assert cells == [1, 1, 1, 1, 1, 3, 4, 5, 10, 20]
    assert dict(zip(Counters.FIELDS, cells)) == {
        name: getattr(counters, name) for name in Counters.FIELDS}
    assert struct.unpack_from("%dQ" % len(Counters.FIELDS), shared, Counters.SIZE) == tuple(cells)
    # The neighbouring slots are untouched.
    assert not any(shared[:Counters.SIZE]) and not any(shared[2 * Counters.SIZE:])
    del slot, counters


def test_the_values_in_the_buffer_are_the_starting_totals(engine_counters):
    Counters, _ = engine_counters
    area = bytearray(Counters.SIZE)
    memoryview(area).cast("Q")[0] = 41
    counters = Counters(area)
    assert counters.connections_total == 41
    counters.connection_opened()
    assert counters.connections_total == 42


def test_a_cell_wraps_around_like_a_c_counter(engine_counters):
    Counters, _ = engine_counters
    area = bytearray(Counters.SIZE)
    memoryview(area).cast("Q")[Counters.FIELDS.index("idle_closed_total")] = (1 << 64) - 1
    counters = Counters(area)
    counters.idle_closed(2)
    assert counters.idle_closed_total == 1


def test_the_buffer_is_held_while_the_counters_live(engine_counters):
    Counters, _ = engine_counters
    area = mmap.mmap(-1, mmap.PAGESIZE)
    counters = Counters(memoryview(area)[:Counters.SIZE])
    with pytest.raises(BufferError):
        area.close()  # the counters still write there
    counters.connection_opened()
    del counters
    area.close()


@pytest.mark.parametrize("make, error, words", [
    (lambda size: bytes(size), TypeError, "writable"),
    (lambda size: memoryview(bytearray(size)).toreadonly(), TypeError, "writable"),
    (lambda size: bytearray(size - 1), ValueError, "at least"),
    (lambda size: memoryview(bytearray(2 * size))[::2], ValueError, "contiguous"),
    (lambda size: memoryview(bytearray(size + 16))[4:], ValueError, "8-byte"),
    (lambda size: size, TypeError, "bytes-like"),
    (lambda size: "x" * size, TypeError, "bytes-like"),
], ids=["bytes", "read-only", "too-small", "strided", "misaligned", "int", "str"])
def test_a_bad_buffer_is_refused_clearly(engine_counters, make, error, words):
    Counters, _ = engine_counters
    with pytest.raises(error, match=words):
        Counters(make(Counters.SIZE))


def test_threads_reach_the_exact_total_in_a_shared_buffer(engine_counters, shared):
    Counters, Meter = engine_counters
    counters = Counters(memoryview(shared)[:Counters.SIZE])
    meter = _meter(Meter, 3, 5)
    rounds, workers = 20000, 4

    def bump():
        for _ in range(rounds):
            counters.connection_opened()
            counters.fold(meter)

    threads = [threading.Thread(target=bump) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 6)
    assert not any(t.is_alive() for t in threads)
    total = rounds * workers
    assert (counters.connections_total, counters.connections_closed_total,
            counters.bytes_received_closed, counters.bytes_sent_closed) == (
                total, total, 3 * total, 5 * total)
    del counters


def _read_exactly(fd, size):
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        assert chunk, "the child ended early"
        data += chunk
    return data


@pytest.mark.skipif(not HAVE_FORK, reason="needs os.fork")
def test_a_forked_worker_counts_into_the_parents_view(engine_counters, shared):
    Counters, Meter = engine_counters
    size = Counters.SIZE
    # Slot 1 is the worker's; the parent reads it through its own Counters and through a raw view.
    seen = Counters(memoryview(shared)[size:2 * size])
    raw = memoryview(shared)[size:2 * size].cast("Q")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            worker = Counters(memoryview(shared)[size:2 * size])
            for _ in range(1000):
                worker.connection_opened()
            for _ in range(999):
                worker.fold(_meter(Meter, 7, 11))
            worker.handler_error()
            os.write(ready_w, b"1")
            os.read(go_r, 1)  # stay alive until the parent has looked, then be killed
            worker.connection_opened()  # never reached after a kill
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        _read_exactly(ready_r, 1)
        expected = dict.fromkeys(Counters.FIELDS, 0)
        expected.update(connections_total=1000, connections_closed_total=999,
                        handler_errors_total=1, bytes_received_closed=7 * 999,
                        bytes_sent_closed=11 * 999)
        # Exact while the worker is still alive: no lag, nothing to flush.
        assert {name: getattr(seen, name) for name in Counters.FIELDS} == expected
        assert dict(zip(Counters.FIELDS, raw)) == expected
        assert seen.connections_total - seen.connections_closed_total == 1
        # A killed worker loses nothing that it counted.
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        pid = None
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert dict(zip(Counters.FIELDS, raw)) == expected
        # The parent's own slot 0 was never written.
        assert not any(shared[:size])
    finally:
        os.close(ready_r)
        os.close(go_w)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raw.release()
        del seen


@pytest.mark.parametrize("name", ["TCPServer", "ThreadingTCPServer", "GreenletTCPServer"])
def test_closed_connections_follow_a_real_servers(cy_ss, name):
    class Echo(cy_ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    cls = type("S", (getattr(cy_ss, name),), {"request_queue_size": 16})
    server = cls((HOST, 0), Echo)
    counters = server._connection_registry.counters
    with serving(server):
        if name == "TCPServer":
            # One at a time: each connection is handled before the next is accepted.
            for _ in range(3):
                with connect(server.server_address) as c:
                    c.sendall(b"ping\n")
                    assert c.recv(16) == b"ping\n"
        else:
            clients = [connect(server.server_address) for _ in range(3)]
            try:
                for c in clients:
                    c.sendall(b"ping\n")
                    assert c.recv(16) == b"ping\n"
                # All three are open at once, and the counters say so.
                assert counters.connections_total == 3
                assert counters.connections_total - counters.connections_closed_total == 3
                assert server.stats()["connections_active"] == 3
            finally:
                for c in clients:
                    c.close()
        assert wait_for(lambda: counters.connections_closed_total == 3)
        assert counters.connections_total - counters.connections_closed_total == 0
        assert server.stats()["connections_active"] == 0
