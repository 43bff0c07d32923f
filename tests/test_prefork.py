"""Prefork workers under a supervising parent: real processes, real signals, loopback clients.

Each server runs in its own process (``support_prefork.py``), since the supervisor takes signals
only in a main thread; each test runs on both engines.  Waits are bounded and generous (a loaded
2-core machine), except where the issue names a bound (a killed worker back within a second,
the port free within 2 s of the parent's death).
"""
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from support_net import TIMEOUT, subprocess_env

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="prefork needs fork()")

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support_prefork.py")
ENGINES = {"compiled": {}, "pure": {"CYSOCKETSERVER_NO_EXTENSIONS": "1"}}


@pytest.fixture(params=sorted(ENGINES))
def engine_env(request):
    if request.param == "compiled":
        from cysocketserver import _engine

        if not _engine.available("compiled"):
            pytest.skip("the compiled engine is not built")
    return ENGINES[request.param]


class App:
    """A prefork server process and what it printed when it started."""

    def __init__(self, env, *args):
        self.proc = subprocess.Popen(
            [sys.executable, APP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=subprocess_env(**env), text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("the server did not start: %s" % self.proc.stderr.read())
        info = json.loads(line)
        self.port = info["port"]
        self.pid = info["pid"]
        self.stats_port = info["stats_port"]
        self.seen_workers = set()

    def stats(self):
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=TIMEOUT) as sock:
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        figures = json.loads(data)
        self.seen_workers.update(row["pid"] for row in figures["per_worker"] if row["pid"])
        return figures

    def wait_for(self, predicate, timeout=TIMEOUT, step=0.02):
        """Poll stats() until predicate(stats) holds; returns (stats, seconds waited)."""
        began = time.monotonic()
        while True:
            figures = self.stats()
            if predicate(figures):
                return figures, time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise AssertionError("timed out; last stats: %r" % figures)
            time.sleep(step)

    def serving_pids(self, figures=None):
        figures = figures or self.stats()
        return [row["pid"] for row in figures["per_worker"] if row["state"] == "serving"]

    def ready(self, workers):
        figures, _ = self.wait_for(lambda s: len(self.serving_pids(s)) == workers)
        return figures

    def ask(self, line, timeout=TIMEOUT):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(line.encode() + b"\n")
            return _read_line(sock)

    def signal(self, signum):
        os.kill(self.pid, signum)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()
        # Workers of a parent killed here exit on their own within a second; make sure.
        deadline = time.monotonic() + 3
        for pid in self.seen_workers:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _alive(pid):
    """Whether ``pid`` is a live process (a zombie nobody reaped yet counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.fixture
def start(engine_env):
    apps = []

    def start(*args):
        app = App(engine_env, *args)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()


class Load:
    """Clients that each connect, ask for the worker's pid and close, over and over."""

    def __init__(self, port, clients=2, pause=0.0):
        self.port = port
        self.ok = 0
        self.failures = []
        self.pause = pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as sock:
                    sock.sendall(b"pid\n")
                    reply = _read_line(sock)
                if not reply.strip().isdigit():
                    raise OSError("bad reply %r" % reply)
                with self._lock:
                    self.ok += 1
            except OSError as exc:
                with self._lock:
                    self.failures.append(repr(exc))
            if self.pause:
                time.sleep(self.pause)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT)
        return self.ok, self.failures


# -- every worker up and serving ----------------------------------------------------------------

@pytest.mark.parametrize("model", ["sync", "threading", "pool", "greenlet"])
def test_every_worker_serves(start, model):
    if model == "greenlet":
        pytest.importorskip("greenlet")
    app = start("--workers", "3", "--model", model)
    figures = app.ready(3)
    pids = app.serving_pids(figures)
    assert len(set(pids)) == 3 and app.pid not in pids
    assert all(_alive(pid) for pid in pids)
    assert figures["workers"] == 3 and figures["workers_serving"] == 3
    assert all(row["heartbeat_age_seconds"] < 2 for row in figures["per_worker"])
    for _ in range(5):
        assert int(app.ask("pid")) in pids


def test_a_busy_worker_is_not_handed_new_connections(start):
    """Shared listener: a worker busy in a request is not waiting, so the next connection goes
    to an idle one -- one after another, every worker serves."""
    app = start("--workers", "3", "--model", "sync")
    pids = set(app.serving_pids(app.ready(3)))
    holders = []
    try:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT)
            sock.sendall(b"sleep 1.5\n")
            holders.append(sock)
            time.sleep(0.2)  # taken by an idle worker before the next arrives
        assert {int(_read_line(sock)) for sock in holders} == pids
    finally:
        for sock in holders:
            sock.close()


def test_reuseport_spreads_connections_over_every_worker(start):
    app = start("--workers", "3", "--model", "threading", "--balancing", "reuseport")
    pids = set(app.serving_pids(app.ready(3)))
    served = {int(app.ask("pid")) for _ in range(60)}
    assert served == pids


def test_datagram_workers(start):
    app = start("--workers", "2", "--model", "udp")
    pids = set(app.serving_pids(app.ready(2)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(b"hello", ("127.0.0.1", app.port))
        reply, _ = sock.recvfrom(100)
    assert int(reply) in pids


# -- failures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("balancing", ["shared", "reuseport"])
def test_kill_9_of_a_worker_costs_only_its_requests_and_it_is_back_within_a_second(
        start, balancing):
    app = start("--workers", "2", "--model", "threading", "--balancing", balancing)
    figures = app.ready(2)
    victim = figures["per_worker"][0]["pid"]
    load = Load(app.port, clients=1)
    try:
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        figures, _ = app.wait_for(
            lambda s: s["per_worker"][0]["pid"] not in (None, victim)
            and s["per_worker"][0]["state"] == "serving", step=0.01)
        back_after = time.monotonic() - killed_at
        time.sleep(0.3)
    finally:
        ok, failures = load.stop()
    # One client, one request at a time: at most the one the worker had in hand.
    assert len(failures) <= 1, failures
    assert ok > 10
    assert back_after < 1.0, back_after
    row = figures["per_worker"][0]
    assert row["restarts"] == 1
    assert figures["worker_crashes_total"] == 1


def test_a_worker_that_crashes_at_start_is_retried_with_back_off(start, tmp_path):
    attempts = tmp_path / "attempts"
    app = start("--workers", "1", "--crash-starts", "%s:4" % attempts)
    figures = app.ready(1)
    times = [float(line) for line in attempts.read_text().split()]
    assert len(times) == 5  # four failures, then the one that serves
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    # 0.1, 0.2, 0.4, 0.8 s: each pause at least about double the one before.
    for earlier, later in zip(gaps, gaps[1:]):
        assert later > 1.5 * earlier, gaps
    assert gaps[0] >= 0.09, gaps
    assert figures["worker_crashes_total"] == 4
    assert int(app.ask("pid")) == app.serving_pids()[0]


def test_a_worker_that_misses_its_heartbeat_is_killed_and_replaced(start):
    app = start("--workers", "1", "--model", "sync", "--worker-timeout", "1.0",
                "--poll-interval", "0.1")
    stuck = app.serving_pids(app.ready(1))[0]
    hung = socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT)
    try:
        hung.sendall(b"hang\n")
        began = time.monotonic()
        figures, _ = app.wait_for(lambda s: s["worker_timeouts_total"] == 1
                                  and app.serving_pids(s) not in ([], [stuck]))
        took = time.monotonic() - began
    finally:
        hung.close()
    assert 0.8 < took < 5, took
    assert not _alive(stuck)
    assert int(app.ask("pid")) != stuck


def test_max_requests_recycles_workers_without_failing_a_request(start):
    app = start("--workers", "1", "--model", "threading", "--max-requests", "5")
    app.ready(1)
    pids = [int(app.ask("pid")) for _ in range(23)]
    assert len(set(pids)) >= 4
    figures, _ = app.wait_for(lambda s: s["connections_total"] == 23)
    assert figures["per_worker"][0]["requests_total"] == 23
    assert figures["worker_restarts_total"] >= 3
    assert figures["worker_crashes_total"] == 0


# -- signals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("balancing,model", [("shared", "threading"), ("reuseport", "threading"),
                                             ("shared", "greenlet")])
def test_sighup_under_load_replaces_every_worker_and_fails_no_request(start, balancing, model):
    if model == "greenlet":
        pytest.importorskip("greenlet")
    app = start("--workers", "2", "--model", model, "--balancing", balancing)
    before = set(app.serving_pids(app.ready(2)))
    load = Load(app.port, clients=2)
    try:
        time.sleep(0.3)
        app.signal(signal.SIGHUP)
        figures, _ = app.wait_for(
            lambda s: len(app.serving_pids(s)) == 2 and not before & set(app.serving_pids(s)))
        time.sleep(0.3)
    finally:
        ok, failures = load.stop()
    assert failures == []
    assert ok > 20
    assert figures["worker_crashes_total"] == 0
    for pid in before:
        deadline = time.monotonic() + TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid)


def test_sigterm_drains_what_is_running_and_queued_then_exits_0(start):
    app = start("--workers", "2", "--model", "sync", "--drain-timeout", "5")
    pids = app.serving_pids(app.ready(2))
    busy = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT)
        sock.sendall(b"sleep 1\n")
        sock.shutdown(socket.SHUT_WR)  # one request: the worker is free once it answered
        busy.append(sock)
        time.sleep(0.2)
    # Both workers are busy: this one waits in the listener's queue.
    queued = socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT)
    queued.sendall(b"pid\n")
    began = time.monotonic()
    app.signal(signal.SIGTERM)
    try:
        replies = [_read_line(sock) for sock in busy + [queued]]
    finally:
        for sock in busy + [queued]:
            sock.close()
    assert all(reply.strip().isdigit() for reply in replies), replies
    assert app.proc.wait(TIMEOUT) == 0
    took = time.monotonic() - began
    assert took < 5 + 2, took
    assert "stopped" in app.proc.stdout.read()
    for pid in pids:
        assert not _alive(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT).close()


def test_sigint_stops_at_once(start):
    app = start("--workers", "2", "--model", "threading")
    pids = app.serving_pids(app.ready(2))
    slow = socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT)
    slow.sendall(b"sleep 30\n")
    time.sleep(0.2)
    began = time.monotonic()
    app.signal(signal.SIGINT)
    assert app.proc.wait(TIMEOUT) == 130
    assert time.monotonic() - began < 3
    slow.close()
    for pid in pids:
        assert not _alive(pid)


def test_sigttin_and_sigttou_add_and_remove_a_worker(start):
    app = start("--workers", "1", "--model", "threading", "--balancing", "reuseport")
    app.ready(1)
    app.signal(signal.SIGTTIN)
    figures = app.ready(2)
    assert figures["workers"] == 2
    load = Load(app.port, clients=2)
    try:
        time.sleep(0.3)
        removed = figures["per_worker"][1]["pid"]
        app.signal(signal.SIGTTOU)
        figures, _ = app.wait_for(lambda s: s["workers"] == 1 and not _alive(removed))
        time.sleep(0.3)
    finally:
        ok, failures = load.stop()
    # The removed worker emptied its listener's queue before closing it: nothing reset.
    assert failures == []
    assert ok > 10
    assert len(app.serving_pids(figures)) == 1


def test_sigkill_of_the_parent_leaves_no_worker_and_frees_the_port(start):
    app = start("--workers", "2", "--model", "threading")
    pids = app.serving_pids(app.ready(2))
    # A request in progress must not keep its worker (and the port) alive.
    slow = socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT)
    slow.sendall(b"sleep 30\n")
    time.sleep(0.2)
    app.signal(signal.SIGKILL)
    killed = time.monotonic()
    app.proc.wait(TIMEOUT)
    free_after = None
    while time.monotonic() - killed < 5:
        if not any(_alive(pid) for pid in pids) and _port_free(app.port):
            free_after = time.monotonic() - killed
            break
        time.sleep(0.02)
    slow.close()
    assert free_after is not None and free_after < 2.0, free_after


def _port_free(port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


# -- statistics -------------------------------------------------------------------------------

def test_statistics_summed_across_workers_equal_what_the_clients_counted(start):
    app = start("--workers", "2", "--model", "threading", "--balancing", "reuseport")
    figures = app.ready(2)
    sent = received = 0
    for count in range(120):
        line = b"line %d\n" % count
        with socket.create_connection(("127.0.0.1", app.port), timeout=TIMEOUT) as sock:
            sock.sendall(line)
            reply = _read_line(sock)
        assert reply == line
        sent += len(line)
        received += len(reply)
        if count == 60:
            # A worker killed and replaced: what it counted stays counted.  (Once its
            # connections have ended: the bytes of an open one are the worker's until then.)
            app.wait_for(lambda s: s["connections_active"] == 0)
            os.kill(figures["per_worker"][0]["pid"], signal.SIGKILL)
            app.wait_for(lambda s: s["workers_serving"] == 2
                         and s["per_worker"][0]["restarts"] == 1)
    figures, _ = app.wait_for(lambda s: s["connections_total"] == 120
                              and s["connections_active"] == 0)
    assert sum(row["requests_total"] for row in figures["per_worker"]) == 120
    assert all(row["requests_total"] > 0 for row in figures["per_worker"])
    assert figures["bytes_received_total"] == sent
    assert figures["bytes_sent_total"] == received
    assert figures["handler_errors_total"] == 0


# -- from code, in any thread -------------------------------------------------------------------

def test_methods_reload_add_remove_and_shutdown_from_another_thread(cy_ss):
    """The supervisor in a thread other than the main one takes no signals; its commands are
    the server's methods."""
    from cysocketserver.prefork import PreforkMixIn

    class Handler(cy_ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"%d\n" % os.getpid())

    class Server(PreforkMixIn, cy_ss.ThreadingTCPServer):
        workers = 2
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        def serving(count=2):
            deadline = time.monotonic() + TIMEOUT
            while True:
                figures = server.stats()
                pids = [row["pid"] for row in figures["per_worker"] if row["state"] == "serving"]
                if len(pids) == figures["workers"] == count:
                    return set(pids)
                assert time.monotonic() < deadline, figures
                time.sleep(0.02)

        def ask():
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as sock:
                return int(_read_line(sock))

        first = serving()
        assert len(first) == 2 and ask() in first
        server.reload()
        deadline = time.monotonic() + TIMEOUT
        while serving() & first:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The commands are carried out asynchronously: serving() waits for their effect.
        server.add_worker()
        three = serving(3)
        server.remove_worker()
        two = serving(2)
        (removed,) = three - two
        deadline = time.monotonic() + TIMEOUT
        while _alive(removed):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ask() in two
        with pytest.raises(RuntimeError):
            server.serve_forever()
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        server.server_close()
    assert not thread.is_alive()
    figures = server.stats()
    assert figures["connections_total"] == 2
    assert figures["worker_restarts_total"] == 2
    for pid in first:
        assert not _alive(pid)


@pytest.mark.parametrize("attrs,error", [
    ({"workers": 0}, ValueError), ({"workers": "2"}, TypeError),
    ({"balancing": "round-robin"}, ValueError), ({"worker_timeout": 0.5}, ValueError),
    ({"worker_timeout": -1}, ValueError), ({"max_requests": 0}, ValueError),
    ({"max_requests_jitter": -1}, ValueError),
])
def test_bad_settings_are_refused_before_any_fork(cy_ss, attrs, error):
    from cysocketserver.prefork import PreforkMixIn

    server_class = type("Server", (PreforkMixIn, cy_ss.TCPServer), attrs)
    with server_class(("127.0.0.1", 0), cy_ss.StreamRequestHandler) as server:
        with pytest.raises(error):
            server.serve_forever(poll_interval=0.5)
        assert server.stats()["per_worker"] == []


def test_max_requests_on_a_datagram_server_is_refused(cy_ss):
    from cysocketserver.prefork import PreforkMixIn

    server_class = type("Server", (PreforkMixIn, cy_ss.UDPServer), {"max_requests": 10})
    with server_class(("127.0.0.1", 0), cy_ss.DatagramRequestHandler) as server:
        with pytest.raises(ValueError, match="datagram"):
            server.serve_forever()


def test_reuseport_needs_an_internet_socket(cy_ss, short_tmp):
    from cysocketserver.prefork import PreforkMixIn

    server_class = type("Server", (PreforkMixIn, cy_ss.UnixStreamServer),
                        {"balancing": "reuseport"})
    with server_class(os.path.join(short_tmp, "s"), cy_ss.StreamRequestHandler) as server:
        with pytest.raises(ValueError, match="reuseport"):
            server.serve_forever()


def test_prefork_must_come_first_among_the_bases(cy_ss):
    from cysocketserver.prefork import PreforkMixIn

    with pytest.raises(TypeError, match="PreforkMixIn must come before"):
        type("Server", (cy_ss.ThreadingTCPServer, PreforkMixIn), {})


# -- hitless upgrade ----------------------------------------------------------------------------

def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EchoLoad(Load):
    """Load for the echo command: a line comes back."""

    def _run(self):
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as sock:
                    sock.sendall(b"ping\n")
                    if _read_line(sock) != b"ping\n":
                        raise OSError("no echo")
                with self._lock:
                    self.ok += 1
            except OSError as exc:
                with self._lock:
                    self.failures.append(repr(exc))


@pytest.mark.parametrize("balancing", ["shared", "reuseport"])
def test_sigusr2_hands_over_to_a_new_program_without_failing_a_request(engine_env, balancing,
                                                                       tmp_path):
    port = _free_port()
    # Files, not pipes: the new program inherits them and outlives the old one.
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        old = subprocess.Popen(
            [sys.executable, "-m", "cysocketserver", "echo", "--port", str(port),
             "--workers", "2", "--balancing", balancing], stdout=out, stderr=err,
            env=subprocess_env(**engine_env), text=True)
    new_pid = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while "on 127.0.0.1:%d" % port not in out_path.read_text():
            assert time.monotonic() < deadline and old.poll() is None, err_path.read_text()
            time.sleep(0.02)
        load = EchoLoad(port, clients=2)
        try:
            time.sleep(0.5)
            old.send_signal(signal.SIGUSR2)
            assert old.wait(TIMEOUT) == 0
            time.sleep(0.5)
        finally:
            ok, failures = load.stop()
        log = err_path.read_text()
        assert "upgraded: pid" in log, log
        new_pid = int(log.split("upgraded: pid ", 1)[1].split()[0])
        assert failures == [] and ok > 20, (failures, ok)
        # The new program serves on, in a process of its own.
        assert _alive(new_pid)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"after\n")
            assert _read_line(sock) == b"after\n"
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
        if new_pid is None and "upgrading: started the new program (pid " in err_path.read_text():
            new_pid = int(err_path.read_text().split("new program (pid ", 1)[1].split(")")[0])
        if new_pid is not None:
            os.kill(new_pid, signal.SIGTERM)
            deadline = time.monotonic() + TIMEOUT
            while _alive(new_pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not _alive(new_pid)


def test_an_upgrade_whose_new_program_fails_changes_nothing(start):
    app = start("--workers", "1", "--model", "threading", "--fail-upgrade")
    pid = app.serving_pids(app.ready(1))[0]
    app.signal(signal.SIGUSR2)
    time.sleep(1.0)
    assert int(app.ask("pid")) == pid
    figures = app.stats()
    assert app.serving_pids(figures) == [pid] and figures["worker_restarts_total"] == 0
    app.signal(signal.SIGTERM)
    assert app.proc.wait(TIMEOUT) == 0
    log = app.proc.stderr.read()
    assert "started by an upgrade: failing on purpose" in log
    assert "upgrade failed" in log, log
