"""A listener several processes share (``_shared_listener``) wakes one idle process per
connection, not all of them (Linux's EPOLLEXCLUSIVE), through the serve loop's own poller
(plain and threading servers) and through the greenlet servers' hub, on both engines.

The processes are forked from the test, each serving the same listening socket with
poll_interval=30 so that no timed wake-up is counted; each writes a byte to a pipe for every
wake-up.  A child never returns into pytest (os._exit) and is always killed and reaped.
"""
import os
import signal
import socket
import time
import traceback

import pytest

from cysocketserver.core import plan as serve_plan
from cysocketserver.core.state import state_of
from support_net import HAVE_FORK, HOST, TIMEOUT, connect, serving, wait_for

pytestmark = pytest.mark.skipif(not (HAVE_FORK and serve_plan.EXCLUSIVE_WAKEUP),
                                reason="needs fork() and EPOLLEXCLUSIVE (Linux)")

WORKERS = 3
CONNECTIONS = 4
# Wake-ups beyond one per connection that exclusive waiting may still see: the kernel promises
# "one or more", and a worker that is back in its wait a moment late can see a connection that
# another one is taking.
SLACK = 2
# How long a napping get_request() waits before it accepts, so that every process the kernel
# woke is surely back in user space (and counted) before one of them takes the connection.
NAP = 0.05
SERVERS = ["TCPServer", "ThreadingTCPServer", "GreenletTCPServer"]


def _echo_handler(ss):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline())

    return Echo


def _server_class(ss, name, shared, count_in):
    """``name`` counting its wake-ups into ``self.tally_fd``: each wake-up of serve_forever
    (``service_actions``, native intake), or each wake-up for the listener (a ``get_request``
    that naps before accepting, which sends the server through the hooks intake)."""
    base = getattr(ss, name)
    attrs = {"_shared_listener": shared, "allow_reuse_address": True, "request_queue_size": 64,
             "tally_fd": -1}

    if count_in == "service_actions":
        def service_actions(self):
            os.write(self.tally_fd, b"w")
            base.service_actions(self)

        attrs["service_actions"] = service_actions
    else:
        def get_request(self):
            os.write(self.tally_fd, b"w")
            time.sleep(NAP)
            return base.get_request(self)

        attrs["get_request"] = get_request
    return type("Counting" + name, (base,), attrs)


def _in_epoll_wait(pid):
    try:
        with open(f"/proc/{pid}/wchan") as f:
            where = f.read()
    except OSError:
        return None
    if not where or where == "0":
        return None  # hidden here
    return "epoll" in where


def _fork_workers(server, tally_w, ready_w):
    pids = []
    for _ in range(WORKERS):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                server.tally_fd = tally_w
                os.write(ready_w, b"r")
                server.serve_forever(poll_interval=30)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def _reap(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        os.waitpid(pid, 0)


def _read_all(fd):
    data = b""
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    return data


def _wake_ups_for_connections(ss, name, shared, count_in):
    """Serve one listener from WORKERS forked processes; make CONNECTIONS echo round trips one
    after another; return how many wake-ups the processes counted."""
    cls = _server_class(ss, name, shared, count_in)
    server = cls((HOST, 0), _echo_handler(ss))
    if count_in == "get_request":
        # The losers' accept() must find nothing rather than block in the hooks intake.
        server.socket.setblocking(False)
    tally_r, tally_w = os.pipe()
    ready_r, ready_w = os.pipe()
    os.set_blocking(tally_r, False)
    pids = []
    try:
        pids = _fork_workers(server, tally_w, ready_w)
        got = b""
        deadline = time.monotonic() + TIMEOUT
        while len(got) < WORKERS and time.monotonic() < deadline:
            got += os.read(ready_r, WORKERS)
        assert got == b"r" * WORKERS
        # Every worker waiting for the listener before the first connection (where /proc
        # says where a process sleeps), else a pause long enough on an idle machine.
        waiting = wait_for(lambda: all(_in_epoll_wait(pid) is not False for pid in pids))
        assert waiting, "the workers never got to wait for the listener"
        time.sleep(0.1)
        assert _read_all(tally_r) == b"", "a worker woke with no connection"
        for i in range(CONNECTIONS):
            with connect(server.server_address) as client:
                client.sendall(b"ping %d\n" % i)
                assert client.recv(100) == b"ping %d\n" % i
            # Every worker back in its wait before the next one.
            time.sleep(0.05)
            wait_for(lambda: all(_in_epoll_wait(pid) is not False for pid in pids), timeout=2)
        time.sleep(NAP + 0.1)
        return len(_read_all(tally_r))
    finally:
        _reap(pids)
        for fd in (tally_r, tally_w, ready_r, ready_w):
            os.close(fd)
        server.server_close()


@pytest.mark.parametrize("name", SERVERS)
def test_a_shared_listener_wakes_one_worker_per_connection(cy_ss, name):
    wake_ups = _wake_ups_for_connections(cy_ss, name, shared=True, count_in="service_actions")
    assert CONNECTIONS <= wake_ups <= CONNECTIONS + SLACK


@pytest.mark.parametrize("name", ["TCPServer", "GreenletTCPServer"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "not-shared"])
def test_only_a_shared_listener_spares_the_idle_workers(cy_ss, name, shared):
    # get_request() naps before accepting: every process the kernel woke gets to count its
    # wake-up before one of them takes the connection.
    wake_ups = _wake_ups_for_connections(cy_ss, name, shared, count_in="get_request")
    if shared:
        assert CONNECTIONS <= wake_ups <= CONNECTIONS + SLACK
    else:
        # Every idle worker wakes for every connection (the thundering herd).
        assert wake_ups >= (WORKERS - 1) * CONNECTIONS + 1


# --------------------------------------------------------------------------- one process


def _shared(ss, name, **attrs):
    base = getattr(ss, name)
    return type("Shared" + name, (base,), {"_shared_listener": True, **attrs})


def test_the_plan_asks_for_an_exclusive_wait_only_for_a_shared_listener(cy_ss):
    for shared in (False, True):
        cls = type("S", (cy_ss.TCPServer,), {"_shared_listener": shared, "timeout": 0.01})
        with cls((HOST, 0), cy_ss.BaseRequestHandler) as server:
            server.handle_request()  # times out
            assert state_of(server).plan.exclusive is shared


@pytest.mark.parametrize("name", SERVERS)
def test_shutdown_wakes_a_loop_waiting_exclusively(cy_ss, name):
    server = _shared(cy_ss, name)((HOST, 0), _echo_handler(cy_ss))
    with serving(server, poll_interval=30):
        with connect(server.server_address) as client:
            client.sendall(b"hello\n")
            assert client.recv(100) == b"hello\n"
        assert state_of(server).plan.exclusive is True
        time.sleep(0.05)
        started = time.monotonic()
    # serving() has shut it down: a loop waiting 30 s between polls ended at once.
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "GreenletTCPServer"])
def test_max_connections_pauses_and_resumes_an_exclusive_wait(cy_ss, name):
    # At the limit the listener leaves the epoll set; below it, it is added again (with
    # EPOLLEXCLUSIVE, which only an addition accepts), twice over.
    server = _shared(cy_ss, name, max_connections=1)((HOST, 0), _echo_handler(cy_ss))
    with serving(server, poll_interval=30):
        held = connect(server.server_address)
        try:
            for round_ in range(2):
                waiting = connect(server.server_address)
                try:
                    waiting.sendall(b"queued %d\n" % round_)
                    time.sleep(0.3)
                    # Not taken while the other connection is open: the listener is paused.
                    assert server.stats()["connections_active"] == 1
                    held.sendall(b"first\n")
                    assert held.recv(100) == b"first\n"
                    held.close()
                    assert waiting.recv(100) == b"queued %d\n" % round_
                finally:
                    waiting.close()
                held = connect(server.server_address)
                time.sleep(0.1)
            assert state_of(server).plan.exclusive is True
        finally:
            held.close()


# --------------------------------------------------------------------------- the hub


def test_hub_changes_an_exclusive_registration_by_adding_it_again(cy_ss):
    # A readable, a writable, then a readable wait again on one descriptor marked exclusive:
    # each change of interest is a removal and an addition (a modification would fail).
    pytest.importorskip("greenlet")
    from cysocketserver import _engine, _hubcommon

    hub = _engine.current().Hub()
    a, b = socket.socketpair()
    a.setblocking(False)
    results = []
    try:
        hub.set_exclusive(a.fileno())

        def reader_then_writer():
            results.append(hub.wait_fd(a.fileno(), _hubcommon.POLLIN, time.monotonic() + 5))
            results.append(a.recv(10))
            results.append(hub.wait_fd(a.fileno(), _hubcommon.POLLOUT, time.monotonic() + 5))
            results.append(hub.wait_fd(a.fileno(), _hubcommon.POLLIN, time.monotonic() + 5))
            results.append(a.recv(10))

        glet = hub.spawn(reader_then_writer)
        hub.sleep(0.02)
        b.send(b"one")
        hub.sleep(0.05)
        b.send(b"two")
        deadline = time.monotonic() + 5
        while not glet.dead and time.monotonic() < deadline:
            hub.sleep(0.01)
        assert results == [False, b"one", False, False, b"two"]
        hub.forget_fd(a.fileno())
    finally:
        a.close()
        b.close()
        hub.close()
