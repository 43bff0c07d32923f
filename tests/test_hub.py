"""The two greenlet hubs, compiled (``_hub``) and pure Python (``_pure_hub``), behave the same.

Every scenario here runs on a fresh hub of each engine, made in the test's own thread, through
the seam the greenlet servers use (see ``_pure_hub``'s docstring).
"""
import os
import socket
import threading
import time

import pytest

greenlet = pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402
from cysocketserver import _hubcommon  # noqa: E402

POLLIN = _hubcommon.POLLIN
POLLOUT = _hubcommon.POLLOUT


def hub_class(engine):
    if engine == "compiled":
        if cysocketserver.IMPLEMENTATION != "compiled":
            pytest.skip("the compiled engine is not in use")
        from cysocketserver._hub import Hub
    else:
        from cysocketserver._pure_hub import Hub
    return Hub


@pytest.fixture(params=["compiled", "python"])
def hub(request):
    h = hub_class(request.param)()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def full_pair():
    """A connected pair whose first socket can neither read (nothing sent) nor write (full)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_forget_fd_wakes_a_reader_and_writer_once(hub, full_pair):
    a, _b = full_pair
    events = []

    def waiter():
        events.append(("woken", hub.wait_fd(a.fileno(), POLLIN | POLLOUT, -1.0)))
        hub.park()  # only a wake() of its own should end this
        events.append("park ended")

    glet = hub.spawn(waiter)
    hub.sleep(0.02)
    assert events == []
    hub.forget_fd(a.fileno())
    hub.sleep(0.05)
    assert events == [("woken", False)]
    hub.wake(glet)
    hub.sleep(0.01)
    assert events == [("woken", False), "park ended"] and glet.dead


@pytest.mark.parametrize("deadline", [None, "1.5", b"1"])
def test_deadline_must_be_a_number(hub, full_pair, deadline):
    a, _b = full_pair
    with pytest.raises(TypeError):
        hub.wait_fd(a.fileno(), POLLIN, deadline)
    # Nothing is left registered: another greenlet may wait on the descriptor now.
    assert hub.wait_fd(a.fileno(), POLLIN, time.monotonic() + 0.01) is True


def test_deadlines(hub, full_pair):
    a, b = full_pair
    start = time.monotonic()
    assert hub.wait_fd(a.fileno(), POLLIN, start - 1.0 + 0.5) is True  # already past
    assert hub.wait_fd(a.fileno(), POLLIN, time.monotonic() + 0.05) is True
    assert 0.04 <= time.monotonic() - start < 2.0
    threading.Timer(0.05, b.send, (b"go",)).start()
    assert hub.wait_fd(a.fileno(), POLLIN, -1.0) is False  # negative: no deadline
    assert hub.wait_fd(a.fileno(), POLLIN, 0) is False  # ready: an int deadline is fine too


def test_far_deadlines_do_not_overflow_a_wait(hub, full_pair):
    # The only timers are years away: the hub must still wait (capped), not fail.
    a, _b = full_pair
    outcome = []
    hub.spawn(lambda: outcome.append(hub.sleep(1e12)))
    hub.spawn(lambda: outcome.append(hub.wait_fd(a.fileno(), POLLIN, time.monotonic() + 1e12)))
    me = greenlet.getcurrent()
    threading.Timer(0.05, hub.wake_threadsafe, (me,)).start()
    start = time.monotonic()
    hub.park()
    assert time.monotonic() - start < 5.0
    assert outcome == []  # both still waiting
    hub.forget_fd(a.fileno())
    hub.sleep(0.01)
    assert outcome == [False]


def test_bad_descriptors(hub, tmp_path):
    with pytest.raises(ValueError):
        hub.wait_fd(-1, POLLIN, -1.0)
    hub.forget_fd(12345)  # never watched: nothing to do
    path = tmp_path / "file"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        # A regular file cannot be polled: always ready.
        assert hub.wait_fd(f.fileno(), POLLIN, -1.0) is False
        hub.forget_fd(f.fileno())


def test_two_readers_are_refused(hub, full_pair):
    a, b = full_pair
    caught = []

    def second():
        try:
            hub.wait_fd(a.fileno(), POLLIN, -1.0)
        except RuntimeError as exc:
            caught.append(str(exc))

    def first():
        caught.append(hub.wait_fd(a.fileno(), POLLIN, -1.0))

    hub.spawn(first)
    hub.spawn(second)
    hub.sleep(0.02)
    b.send(b"x")
    hub.sleep(0.02)
    assert caught == ["another greenlet is already waiting to read from fd %d" % a.fileno(),
                      False]


def test_greenlets_run_in_the_order_they_were_spawned_and_timers_in_time_order(hub):
    order = []
    for name, delay in (("a", 0.03), ("b", 0.0), ("c", 0.01), ("d", 0.0)):
        hub.spawn(lambda n=name, d=delay: (hub.sleep(d), order.append(n)))
    hub.spawn(order.append, "e")
    hub.sleep(0.1)
    assert order == ["e", "b", "d", "c", "a"]


def test_calls_from_other_threads_and_kill(hub):
    me = greenlet.getcurrent()
    seen = []

    def from_thread():
        hub.call_threadsafe(lambda: seen.append(threading.get_ident()))
        hub.wake_threadsafe(me)

    threading.Thread(target=from_thread).start()
    hub.park()
    hub.sleep(0)
    assert seen == [threading.get_ident()]  # run by the hub, in its own thread

    ended = []

    def victim():
        try:
            hub.sleep(10)
        except greenlet.GreenletExit:
            ended.append("exit")
            raise

    glet = hub.spawn(victim)
    hub.sleep(0.01)
    hub.kill(glet)
    hub.sleep(0.01)
    assert ended == ["exit"] and glet.dead
    # Another exception is thrown in as it is (and reported, as any greenlet's exception).
    glet = hub.spawn(victim)
    hub.sleep(0.01)
    hub.kill(glet, KeyError("custom"))
    hub.sleep(0.01)
    assert ended == ["exit"] and glet.dead
    # A kill queued behind the start: the greenlet runs first; the dead one is left alone.
    glet = hub.spawn(ended.append, "ran")
    hub.kill(glet)
    hub.sleep(0.01)
    assert ended == ["exit", "ran"] and glet.dead


def test_a_greenlet_exception_is_printed_and_the_hub_goes_on(hub, capfd):
    def boom():
        raise ZeroDivisionError("in a greenlet")

    hub.spawn(boom)
    hub.sleep(0.01)
    hub.sleep(0)
    err = capfd.readouterr().err
    assert "Exception in a greenlet on the hub" in err and "ZeroDivisionError" in err


def test_the_hub_cannot_wait_on_itself(hub):
    caught = []

    def in_hub():
        for fn, args in ((hub.sleep, (0.1,)), (hub.park, ()), (hub.wait_fd, (0, POLLIN, -1.0))):
            try:
                fn(*args)
            except RuntimeError:
                caught.append(fn.__name__)

    hub.call_threadsafe(in_hub)
    hub.sleep(0.02)
    assert caught == ["sleep", "park", "wait_fd"]


def test_peer_hangup_wakes_a_reader(hub):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        woken = []
        hub.spawn(lambda: woken.append(hub.wait_fd(a.fileno(), POLLIN, -1.0)))
        hub.sleep(0.01)
        b.close()
        hub.sleep(0.02)
        assert woken == [False]
        assert a.recv(10) == b""
        hub.forget_fd(a.fileno())


def test_block_warning(hub):
    hub.block_warning = 0.02

    def hog():
        time.sleep(0.05)

    with pytest.warns(_hubcommon.HubBlockedWarning, match="kept the hub for"):
        hub.spawn(hog)
        hub.sleep(0.01)
    hub.block_warning = None


def test_closed_hub_takes_no_more_waits(hub):
    hub.close()
    hub.call_threadsafe(print)  # after close(): ignored, no error
    hub.close()  # twice is fine


def test_no_pure_module_behind_the_compiled_hub():
    if cysocketserver.IMPLEMENTATION != "compiled":
        pytest.skip("the compiled engine is not in use")
    import subprocess
    import sys

    from support_net import subprocess_env

    code = ("import sys, cysocketserver._hub; "
            "print('cysocketserver._pure_hub' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_sockets_left_open_are_not_ours(hub):
    # The hub's own descriptors go with close(); a watched socket stays the caller's.
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.send(b"x")
        assert hub.wait_fd(a.fileno(), POLLIN, -1.0) is False
        hub.close()
        os.fstat(a.fileno())


def test_one_cap_on_a_single_wait():
    # Both hubs, the serve loop's poller and the streams wait at most this long in one call.
    assert _hubcommon.MAX_WAIT_SECONDS == 86400.0
    if cysocketserver.IMPLEMENTATION == "compiled":
        from cysocketserver import _hub

        assert _hub.MAX_WAIT_SECONDS == _hubcommon.MAX_WAIT_SECONDS


def test_io_budget_makes_a_busy_greenlet_give_way(hub):
    # Two greenlets whose I/O never waits: each gives way after io_budget operations.
    order = []

    def busy(name, ops):
        for _ in range(ops):
            order.append(name)
            hub.io_done()

    hub.io_budget = 3
    hub.spawn(busy, "a", 7)
    hub.spawn(busy, "b", 7)
    hub.sleep(0.01)
    assert "".join(order) == "aaabbbaaabbbab"
    del order[:]
    hub.io_budget = 0  # no limit
    assert hub.io_budget == 0
    hub.spawn(busy, "a", 500)
    hub.spawn(busy, "b", 500)
    hub.sleep(0.01)
    assert "".join(order) == "a" * 500 + "b" * 500


def test_io_budget_turn_starts_at_each_switch(hub):
    # A greenlet that waits now and then never spends its budget.
    order = []

    def polite(name):
        for _ in range(3):
            for _ in range(2):
                order.append(name)
                hub.io_done()
            hub.sleep(0)

    hub.io_budget = 3
    hub.spawn(polite, "a")
    hub.spawn(polite, "b")
    hub.sleep(0.01)
    assert "".join(order) == "aabbaabbaabb"


def test_io_budget_outside_a_greenlet_and_in_the_hub(hub):
    hub.io_budget = 1
    hub.io_done()  # the thread's main greenlet gives way too (the hub runs, comes back)
    done = []
    hub.call_threadsafe(lambda: (hub.io_done(), hub.io_done(), done.append(True)))
    hub.sleep(0.01)
    assert done == [True]  # the hub's own calls never give way


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), (None, TypeError),
                                          (True, TypeError), (1 << 31, ValueError)])
def test_io_budget_is_checked(hub, value, error):
    with pytest.raises(error):
        hub.io_budget = value
    assert hub.io_budget == _hubcommon.DEFAULT_IO_BUDGET


@pytest.mark.parametrize("engine", ["compiled", "python"])
def test_io_budget_from_the_environment(engine, monkeypatch):
    Hub = hub_class(engine)
    monkeypatch.setenv(_hubcommon.IO_BUDGET_ENV, "7")
    h = Hub()
    assert h.io_budget == 7
    h.close()
    monkeypatch.setenv(_hubcommon.IO_BUDGET_ENV, "many")
    h = Hub()
    assert h.io_budget == _hubcommon.DEFAULT_IO_BUDGET
    h.close()
