"""The reliability suite: each guard against hostile or careless clients, on loopback, bounded in
time, against the threaded, pool and greenlet servers.  Hostile clients come from 127.0.0.2,
normal ones from 127.0.0.1.  ``python tests/support_attack.py`` prints the same figures for the
stdlib's server beside ours.
"""
import os
import random
import socket
import sys
import threading
import time

import pytest

import support_attack as attack
from support_net import HOST, TIMEOUT, serving, subprocess_env, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and uses 127.0.0.2")

MODELS = attack.MODELS
SERVER_OF = {"threading": "ThreadingTCPServer", "pool": "ThreadPoolTCPServer",
             "greenlet": "GreenletTCPServer"}


def _loopback_alias_works():
    try:
        with socket.socket() as s:
            s.bind((attack.ATTACKER, 0))
    except OSError:
        return False
    return True


needs_alias = pytest.mark.skipif(not _loopback_alias_works(),
                                 reason="127.0.0.2 is not usable on this machine")


@needs_alias
@pytest.mark.parametrize("model", MODELS)
def test_slowloris_with_per_client_limit(model, record_property):
    figures = attack.slowloris("cy", model)
    record_property("figures", figures)
    assert figures["failed"] == 0, figures
    assert figures["p99_ms"] < 100, figures


@needs_alias
@pytest.mark.parametrize("model", MODELS)
def test_connection_flood_against_max_connections(model, record_property):
    figures = attack.flood("cy", model)
    record_property("figures", figures)
    assert figures["alive"], figures
    assert figures["cpu_percent_full"] < 5, figures
    assert figures["recovery_s"] is not None and figures["recovery_s"] < 5, figures


@pytest.mark.parametrize("model", MODELS)
def test_sigterm_with_clients_mid_conversation(model, record_property):
    figures = attack.sigterm_mid_conversation(model, drain=1.0)
    record_property("figures", figures)
    assert figures["exit_status"] == 0, figures
    # Within the drain deadline, with room for a loaded machine.
    assert figures["exit_s"] < 1.0 + 2.5, figures
    assert figures["corrupted"] == 0, figures
    assert "0 connection(s) finished, 16 cut" in figures["log"], figures


LAUNCHER = r"""
import os, socket, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "echo"
os.execv(sys.executable, [sys.executable, "-m", "cysocketserver", "echo", *sys.argv[2:]])
"""


@pytest.mark.parametrize("model", MODELS)
def test_listen_fds_through_a_real_exec(model):
    listener = socket.create_server((HOST, 0), backlog=64)
    address = listener.getsockname()
    try:
        fd = listener.fileno()
        command = [sys.executable, "-c", LAUNCHER, str(fd), "--server", model,
                   "--port", "1", "--drain-timeout", "1"]
        server = attack.EchoProcess("cy", model, command=command, pass_fds=(fd,))
        try:
            # Served on the inherited socket, not on --port.
            assert server.address == address, server.line
            assert attack.one_request(address, timeout=TIMEOUT) is not None
            status, _took, err = server.stop()
            assert status == 0, err
        finally:
            server.kill()
    finally:
        listener.close()


# -- in-process, on both engines ------------------------------------------------------------------


def _echo_handler(ss):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    return Echo


@pytest.mark.parametrize("model", MODELS)
def test_idle_timeout_closes_silent_connections_on_time(cy_ss, model):
    idle = 0.5
    cls = type("S", (getattr(cy_ss, SERVER_OF[model]),),
               {"idle_timeout": idle, "request_queue_size": 128, "max_threads": 64})
    server = cls((HOST, 0), _echo_handler(cy_ss))
    closed_after = {}
    with serving(server):
        silent = [socket.create_connection(server.server_address) for _ in range(30)]
        active = [socket.create_connection(server.server_address) for _ in range(4)]
        began = time.monotonic()
        try:
            for s in silent:
                s.setblocking(False)
            deadline = began + idle + 2.0
            while time.monotonic() < deadline and len(closed_after) < len(silent):
                for s in active:
                    s.settimeout(TIMEOUT)
                    s.sendall(b"ping\n")
                    assert s.recv(10) == b"ping\n"
                for i, s in enumerate(silent):
                    if i in closed_after:
                        continue
                    try:
                        if s.recv(10) == b"":
                            closed_after[i] = time.monotonic() - began
                    except BlockingIOError:
                        pass
                    except ConnectionResetError:
                        closed_after[i] = time.monotonic() - began
                time.sleep(0.02)
            assert len(closed_after) == len(silent)
            assert min(closed_after.values()) >= idle - 0.05, closed_after
            # On time: within a generous margin for a loaded 2-core machine.
            assert max(closed_after.values()) < idle + 1.0, closed_after
            assert server.stats()["connections_active"] == len(active)
        finally:
            for s in silent + active:
                s.close()
    assert server.stats()["idle_closed_total"] == len(silent)


@pytest.mark.parametrize("model", MODELS)
def test_drain_under_load(cy_ss, model):
    cls = type("S", (getattr(cy_ss, SERVER_OF[model]),),
               {"drain_timeout": 0.6, "request_queue_size": 64})
    server = cls((HOST, 0), _echo_handler(cy_ss))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    corrupted = []
    finishing = threading.Event()
    finish_at = [0.0]
    barrier = threading.Barrier(17)

    def client(index, finisher):
        sent = bytearray()
        got = bytearray()
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as s:
            rounds = 0
            while True:
                line = b"%d-%d-%s\n" % (index, rounds, b"z" * random.randrange(200))
                try:
                    s.sendall(line)
                except OSError:
                    break
                sent += line
                while len(got) < len(sent):
                    try:
                        chunk = s.recv(65536)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        break
                    got += chunk
                if len(got) < len(sent):
                    break
                rounds += 1
                if rounds == 1:
                    barrier.wait(TIMEOUT)
                if finisher and finishing.is_set() and time.monotonic() > finish_at[0]:
                    break   # a conversation that ends within the drain
        if bytes(got) != bytes(sent[:len(got)]):
            corrupted.append(index)

    clients = [threading.Thread(target=client, args=(i, i < 8)) for i in range(16)]
    for c in clients:
        c.start()
    try:
        barrier.wait(TIMEOUT)
        server.shutdown()
        # The finishers end 0.2 s into the drain (0.6 s): open when it begins, done before
        # its deadline; the other eight talk on until they are cut.
        finish_at[0] = time.monotonic() + 0.2
        finishing.set()
        server.server_close()
        thread.join(TIMEOUT)
    finally:
        for c in clients:
            c.join(TIMEOUT)
    assert corrupted == []
    stats = server.stats()
    assert stats["drain_finished_total"] + stats["drain_cut_total"] == 16
    assert stats["drain_cut_total"] == 8, stats
    assert stats["connections_active"] == 0


@pytest.mark.parametrize("model", MODELS)
def test_stats_under_concurrent_load(cy_ss, model):
    cls = type("S", (getattr(cy_ss, SERVER_OF[model]),), {"request_queue_size": 64})
    server = cls((HOST, 0), _echo_handler(cy_ss))
    totals = []
    lock = threading.Lock()

    def client(seed):
        rng = random.Random(seed)
        moved = 0
        for _ in range(3):
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as s:
                for _ in range(rng.randrange(1, 20)):
                    line = b"x" * rng.randrange(1, 3000) + b"\n"
                    s.sendall(line)
                    got = b""
                    while len(got) < len(line):
                        got += s.recv(65536)
                    assert got == line
                    moved += len(line)
        with lock:
            totals.append(moved)

    with serving(server):
        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 3)
        assert wait_for(lambda: server.stats()["connections_active"] == 0)
    stats = server.stats()
    assert len(totals) == 12
    assert stats["connections_total"] == 36
    assert stats["bytes_received_total"] == sum(totals)
    assert stats["bytes_sent_total"] == sum(totals)
