"""spawn() and Task: more work on the hub of a greenlet server's thread, joined or killed.

Each test runs on both engines (the compiled hub and its pure-Python twin).  Most run the
tasks on the hub of the test's own thread (its main greenlet waits on the hub, as a handler
would); one spawns from a handler of a real server.
"""
import gc
import socket
import threading
import time

import pytest

from support_net import HOST, TIMEOUT, request_reply, serving
from support_greenlet import drop_thread_hub as _drop_thread_hub

pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402
import cysocketserver.greenlets as greenlets  # noqa: E402
from greenlet import GreenletExit  # noqa: E402


@pytest.fixture
def hub(cy_ss):
    """This thread's hub, on the engine under test."""
    _drop_thread_hub()
    try:
        yield greenlets.get_hub()
    finally:
        _drop_thread_hub()


class Boom(Exception):
    pass


def _fail(message):
    raise Boom(message)


def test_the_public_names():
    assert cysocketserver.spawn is greenlets.spawn
    assert cysocketserver.Task is greenlets.Task
    assert {"spawn", "Task"} <= set(cysocketserver.__all__) & set(greenlets.__all__)


def test_join_returns_the_result(hub):
    task = cysocketserver.spawn(lambda a, b=0: a + b, 2, b=3)
    assert isinstance(task, cysocketserver.Task)
    assert not task.done()          # it starts when the hub gets a turn
    assert task.join() == 5
    assert task.done()
    assert task.join(timeout=0) == 5   # a finished task: at once, again


def test_join_reraises_the_exception(hub):
    task = cysocketserver.spawn(_fail, "joined")
    with pytest.raises(Boom, match="joined"):
        task.join()
    assert task.done()
    with pytest.raises(Boom):
        task.join()


def test_join_timeout_leaves_the_task_running(hub):
    release = []

    def wait_for_release():
        while not release:
            cysocketserver.sleep(0.01)
        return "released"

    task = cysocketserver.spawn(wait_for_release)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        task.join(timeout=0.1)
    assert 0.09 <= time.monotonic() - start < 2.0
    assert not task.done()
    release.append(True)
    assert task.join(timeout=TIMEOUT) == "released"


def test_others_run_while_a_task_is_joined(hub):
    order = []
    slow = cysocketserver.spawn(lambda: (cysocketserver.sleep(0.1), order.append("slow")))
    quick = cysocketserver.spawn(lambda: order.append("quick"))
    slow.join(timeout=TIMEOUT)
    assert quick.done() and order == ["quick", "slow"]


def test_kill_ends_a_task_blocked_in_recv_and_runs_its_finally(hub):
    a, b = socket.socketpair()
    a, b = greenlets.GreenSocket.from_socket(a), greenlets.GreenSocket.from_socket(b)
    seen = []

    def reader():
        try:
            return a.recv(10)
        except BaseException as exc:
            seen.append(type(exc))
            raise
        finally:
            seen.append("finally")

    try:
        task = cysocketserver.spawn(reader)
        cysocketserver.sleep(0.05)           # it is parked in recv()
        assert not task.done()
        start = time.monotonic()
        task.kill()
        assert time.monotonic() - start < 1.0
        assert task.done() and seen == [GreenletExit, "finally"]
        assert task.join() is None           # a killed task is no error
        task.kill()                          # killing a finished task does nothing
        # The descriptor is free for another greenlet to wait on.
        b.sendall(b"after")
        assert cysocketserver.spawn(a.recv, 10).join(timeout=TIMEOUT) == b"after"
    finally:
        a.close()
        b.close()


def test_kill_ends_a_sleeping_task_and_a_waiting_joiner_wakes(hub):
    ended = []

    def sleeper():
        try:
            cysocketserver.sleep(60)
        finally:
            ended.append("finally")

    task = cysocketserver.spawn(sleeper)
    joined = cysocketserver.spawn(task.join)
    cysocketserver.sleep(0.02)
    task.kill()
    assert ended == ["finally"]
    assert joined.join(timeout=TIMEOUT) is None


def test_a_task_killed_before_it_starts_never_runs(hub):
    ran = []
    task = cysocketserver.spawn(ran.append, "ran")
    task.kill()
    assert task.done()
    cysocketserver.sleep(0.02)
    assert ran == [] and task.join() is None


def test_a_task_that_kills_itself_ends(hub):
    after = []

    def suicidal():
        me.kill()
        after.append("not reached")

    me = cysocketserver.spawn(suicidal)
    assert me.join(timeout=TIMEOUT) is None
    assert after == []


def test_done(hub):
    task = cysocketserver.spawn(cysocketserver.sleep, 0.05)
    assert not task.done()
    cysocketserver.sleep(0.01)
    assert not task.done()
    task.join(timeout=TIMEOUT)
    assert task.done()


def test_an_unjoined_failure_is_reported_once(hub, capsys):
    task = cysocketserver.spawn(_fail, "nobody joins me")
    cysocketserver.sleep(0.01)
    assert task.done()
    assert "nobody joins me" not in capsys.readouterr().err   # not before it is dropped
    del task
    gc.collect()
    err = capsys.readouterr().err
    assert err.count("Boom: nobody joins me") == 1, err
    assert "which was never joined" in err and "Traceback (most recent call last)" in err
    assert "_fail" in err                                     # the task's own frames
    gc.collect()
    assert "nobody joins me" not in capsys.readouterr().err   # never twice


def test_a_joined_failure_is_not_reported(hub, capsys):
    before = cysocketserver.spawn(_fail, "joined before it failed")
    waiter = cysocketserver.spawn(lambda: pytest.raises(Boom, before.join))
    after = cysocketserver.spawn(_fail, "joined after it failed")
    cysocketserver.sleep(0.02)
    assert waiter.join(timeout=TIMEOUT)
    with pytest.raises(Boom):
        after.join()
    del before, waiter, after
    gc.collect()
    assert "joined" not in capsys.readouterr().err


def test_a_killed_task_is_not_reported(hub, capsys):
    task = cysocketserver.spawn(cysocketserver.sleep, 60)
    cysocketserver.sleep(0.01)
    task.kill()
    del task
    gc.collect()
    assert "never joined" not in capsys.readouterr().err


def test_spawn_outside_a_hub_says_what_to_do(cy_ss):
    outcome = []

    def plain_thread():
        try:
            cysocketserver.spawn(print, "never")
        except RuntimeError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=plain_thread)
    thread.start()
    thread.join(TIMEOUT)
    assert len(outcome) == 1
    assert "greenlet server's hub" in outcome[0] and "threading.Thread" in outcome[0]


def test_join_from_another_thread_is_refused(hub):
    task = cysocketserver.spawn(cysocketserver.sleep, 0.05)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(pytest.raises(RuntimeError,
                                                                          task.join)))
    thread.start()
    thread.join(TIMEOUT)
    assert outcome and "thread that spawned it" in str(outcome[0].value)
    task.join(timeout=TIMEOUT)


def test_a_task_cannot_join_itself(hub):
    def self_join():
        return pytest.raises(RuntimeError, me.join).value

    me = cysocketserver.spawn(self_join)
    assert "cannot join itself" in str(me.join(timeout=TIMEOUT))


def test_many_tasks_all_complete(hub):
    count = 1000

    def work(i):
        cysocketserver.sleep(0.001 * (i % 7))
        return i

    tasks = [cysocketserver.spawn(work, i) for i in range(count)]
    assert [task.join(timeout=TIMEOUT) for task in tasks] == list(range(count))


def test_many_timed_joins_leave_no_greenlets_waiting(hub):
    # join(timeout) wakes on completion well before the timeout, and its timer is ended then.
    tasks = [cysocketserver.spawn(cysocketserver.sleep, 0.001) for _ in range(200)]
    start = time.monotonic()
    for task in tasks:
        task.join(timeout=30)
    assert time.monotonic() - start < 5.0


def test_a_handler_spawns_a_task(cy_ss):
    """The greenlet server's handler runs two tasks side by side and joins them."""
    class Handler(cy_ss.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline().strip()
            started = time.monotonic()
            first = cysocketserver.spawn(lambda: (cysocketserver.sleep(0.2), line.upper())[1])
            second = cysocketserver.spawn(lambda: (cysocketserver.sleep(0.2), line[::-1])[1])
            both = first.join(timeout=TIMEOUT) + b" " + second.join(timeout=TIMEOUT)
            took = time.monotonic() - started
            self.wfile.write(b"%s %d\n" % (both, took < 0.35))

    server = cy_ss.GreenletTCPServer((HOST, 0), Handler)
    with serving(server):
        assert request_reply(server.server_address, b"abc\n") == b"ABC cba 1\n"
