"""The production guards on every server family, on both engines: their settings, the connection
limits, the idle timeout, the drain, the statistics and serving a socket made elsewhere."""
import errno
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from support_net import (HAVE_UNIX, HOST, TIMEOUT, connect, recv_until_eof, serving,
                         subprocess_env, wait_for)

MODEL_SERVERS = ["ThreadingTCPServer", "ThreadPoolTCPServer", "GreenletTCPServer"]
ATTACKER = "127.0.0.2"


def _server(ss, name, handler, **attrs):
    attrs.setdefault("request_queue_size", 64)
    cls = type("S", (getattr(ss, name),), attrs)
    return cls((HOST, 0), handler)


def _echo(ss, started=None, ended=None):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            if started is not None:
                started.append(self.client_address)
            try:
                for line in self.rfile:
                    if line == b"boom\n":
                        raise RuntimeError("handler failed on purpose")
                    self.wfile.write(line)
            finally:
                if ended is not None:
                    ended.append(self.client_address)

    return Echo


def _round_trip(sock, payload=b"ping\n"):
    sock.sendall(payload)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "server closed the connection"
        got += chunk
    return got


def _connect_from(source, address, timeout=TIMEOUT):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect(address)
    except BaseException:
        s.close()
        raise
    return s


def _closed_by_server(sock, within):
    """True when the server ends the connection (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("name,value,error", [
    ("max_connections", 0, ValueError),
    ("max_connections", -1, ValueError),
    ("max_connections", 2.5, TypeError),
    ("max_connections", True, TypeError),
    ("max_connections_per_client", 0, ValueError),
    ("max_connections_per_client", "4", TypeError),
    ("idle_timeout", 0, ValueError),
    ("idle_timeout", -1.0, ValueError),
    ("idle_timeout", float("nan"), ValueError),
    ("idle_timeout", "30", TypeError),
    ("drain_timeout", -0.5, ValueError),
    ("drain_timeout", float("inf"), ValueError),
    ("drain_timeout", [1], TypeError),
])
def test_bad_guard_values_fail_when_the_server_is_built(cy_ss, name, value, error):
    cls = type("S", (cy_ss.ThreadingTCPServer,), {name: value})
    with pytest.raises(error, match=name):
        cls((HOST, 0), cy_ss.BaseRequestHandler)


@pytest.mark.parametrize("name, value, message", [
    ("max_connections", 0, "Edge.max_connections must be at least 1 (or None for no limit), "
                           "not 0"),
    ("idle_timeout", "30", "Edge.idle_timeout must be a number of seconds or None, not '30'"),
    ("drain_timeout", -1, "Edge.drain_timeout must be a finite number of seconds >= 0 (or None "
                          "for off), not -1"),
])
def test_a_bad_guard_value_is_explained(cy_ss, name, value, message):
    cls = type("Edge", (cy_ss.ThreadingTCPServer,), {name: value})
    with pytest.raises((TypeError, ValueError)) as caught:
        cls((HOST, 0), cy_ss.BaseRequestHandler)
    assert str(caught.value) == message


def test_bad_guard_value_set_later_fails_when_serving_starts(cy_ss):
    with cy_ss.ThreadingTCPServer((HOST, 0), cy_ss.BaseRequestHandler) as server:
        server.idle_timeout = -2
        with pytest.raises(ValueError, match="idle_timeout"):
            server.serve_forever()


def test_guards_default_to_off(ss):
    # The stdlib has none of them; ours are all None, which means off.
    for name in ("max_connections", "max_connections_per_client", "idle_timeout",
                 "drain_timeout"):
        assert getattr(ss.ThreadingTCPServer, name, None) is None


def test_datagram_server_refuses_connection_guards(cy_ss):
    cls = type("S", (cy_ss.ThreadingUDPServer,), {"max_connections": 5})
    with pytest.raises(ValueError, match="datagram"):
        cls((HOST, 0), cy_ss.BaseRequestHandler)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forking_server_refuses_guards_it_cannot_apply(cy_ss):
    cls = type("S", (cy_ss.ForkingTCPServer,), {"idle_timeout": 5})
    with pytest.raises(ValueError, match="max_children"):
        cls((HOST, 0), cy_ss.BaseRequestHandler)


# --------------------------------------------------------------------------- max_connections


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_max_connections_stops_accepting_and_resumes(cy_ss, name):
    started = []
    server = _server(cy_ss, name, _echo(cy_ss, started), max_connections=3)
    with serving(server):
        clients = [connect(server.server_address) for _ in range(5)]
        try:
            for c in clients[:3]:
                assert _round_trip(c) == b"ping\n"
            for c in clients[3:]:
                c.sendall(b"queued\n")
            time.sleep(0.3)
            # The other two wait in the kernel's backlog, not inside the server.
            assert len(started) == 3
            assert server.stats()["connections_active"] == 3
            clients[0].close()
            clients[0] = None
            clients[3].settimeout(TIMEOUT)
            assert clients[3].recv(100) == b"queued\n"
            time.sleep(0.2)
            assert len(started) == 4
            assert server.stats()["connections_active"] == 3
        finally:
            for c in clients:
                if c is not None:
                    c.close()


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_max_connections_with_hooks_intake(cy_ss, name):
    # An overridden get_request() takes requests one at a time through the hooks: the limit
    # holds there too.
    started = []

    class Counted:
        def get_request(self):
            return self.socket.accept()

    cls = type("S", (Counted, getattr(cy_ss, name)), {"max_connections": 2,
                                                      "request_queue_size": 64})
    server = cls((HOST, 0), _echo(cy_ss, started))
    with serving(server):
        clients = [connect(server.server_address) for _ in range(3)]
        try:
            for c in clients[:2]:
                assert _round_trip(c) == b"ping\n"
            clients[2].sendall(b"queued\n")
            time.sleep(0.3)
            assert len(started) == 2
            clients[1].close()
            clients[1] = None
            clients[2].settimeout(TIMEOUT)
            assert clients[2].recv(100) == b"queued\n"
        finally:
            for c in clients:
                if c is not None:
                    c.close()


# --------------------------------------------------------------------------- per client


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_per_client_limit_closes_the_extra_connection_unhandled(cy_ss, name):
    started = []
    verified = []

    class Verifying:
        def verify_request(self, request, client_address):
            verified.append(client_address)
            return True

    cls = type("S", (Verifying, getattr(cy_ss, name)),
               {"max_connections_per_client": 2, "request_queue_size": 64})
    server = cls((HOST, 0), _echo(cy_ss, started))
    with serving(server):
        first = [_connect_from(ATTACKER, server.server_address) for _ in range(2)]
        try:
            for c in first:
                assert _round_trip(c) == b"ping\n"
            extra = _connect_from(ATTACKER, server.server_address)
            assert _closed_by_server(extra, TIMEOUT)
            extra.close()
            # Another host is not affected.
            with _connect_from(HOST, server.server_address) as other:
                assert _round_trip(other) == b"ping\n"
            # Once one of the host's connections ends, it may open another.
            first[0].close()
            first[0] = None
            assert wait_for(lambda: server.stats()["connections_active"] == 1)
            with _connect_from(ATTACKER, server.server_address) as again:
                assert _round_trip(again) == b"ping\n"
        finally:
            for c in first:
                if c is not None:
                    c.close()
    stats = server.stats()
    assert stats["connections_rejected_total"] == 1
    assert stats["connections_total"] == 5
    # The rejected connection met no handler and no verify_request().
    assert len(started) == 4 and len(verified) == 4


# --------------------------------------------------------------------------- idle_timeout


@pytest.mark.parametrize("name", MODEL_SERVERS + ["TCPServer"])
def test_idle_timeout_ends_the_handlers_pending_read(cy_ss, name):
    reads = []

    class H(cy_ss.StreamRequestHandler):
        def handle(self):
            reads.append(self.rfile.readline())   # blocks: the client sends nothing

    server = _server(cy_ss, name, H, idle_timeout=0.3)
    with serving(server):
        with connect(server.server_address) as c:
            began = time.monotonic()
            assert _closed_by_server(c, TIMEOUT)
            waited = time.monotonic() - began
        assert 0.25 <= waited < 0.3 + 1.5, waited
        # End-of-stream, in every model: the read returned b"".
        assert wait_for(lambda: reads == [b""])
    assert server.stats()["idle_closed_total"] == 1


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_idle_timeout_spares_a_connection_that_keeps_sending(cy_ss, name):
    server = _server(cy_ss, name, _echo(cy_ss), idle_timeout=0.4)
    with serving(server):
        with connect(server.server_address) as talker, connect(server.server_address) as silent:
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                assert _round_trip(talker) == b"ping\n"
                time.sleep(0.1)
            assert _closed_by_server(silent, 0.1)
        assert server.stats()["idle_closed_total"] == 1


@pytest.mark.skipif(not HAVE_UNIX, reason="needs AF_UNIX")
@pytest.mark.parametrize("name", ["ThreadingUnixStreamServer", "ThreadPoolUnixStreamServer",
                                  "GreenletUnixStreamServer"])
def test_idle_timeout_on_a_unix_socket(cy_ss, name, short_tmp):
    # No tcp_info here: the byte meter tells activity.
    path = os.path.join(short_tmp, "s")
    cls = type("S", (getattr(cy_ss, name),), {"idle_timeout": 0.4})
    server = cls(path, _echo(cy_ss))
    with serving(server):
        with socket.socket(socket.AF_UNIX) as talker, socket.socket(socket.AF_UNIX) as silent:
            talker.connect(path)
            silent.connect(path)
            began = time.monotonic()
            deadline = began + 1.0
            while time.monotonic() < deadline:
                talker.settimeout(TIMEOUT)
                assert _round_trip(talker) == b"ping\n"
                time.sleep(0.05)
            assert _closed_by_server(silent, TIMEOUT)
            assert time.monotonic() - began < 0.4 + 1.5
            assert _round_trip(talker) == b"ping\n"
            assert _closed_by_server(talker, TIMEOUT)


# --------------------------------------------------------------------------- drain


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_drain_lets_handlers_finish_then_cuts_the_rest(cy_ss, name):
    class H(cy_ss.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if line == b"quick\n":
                cy_ss.sleep(0.2) if name.startswith("Greenlet") else time.sleep(0.2)
                self.wfile.write(b"done\n")
                return
            for line in self.rfile:   # the other client never stops: cut at the deadline
                self.wfile.write(line)

    server = _server(cy_ss, name, H, drain_timeout=0.8)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,))
    thread.start()
    try:
        quick = connect(server.server_address)
        endless = connect(server.server_address)
        endless.sendall(b"x\n")
        assert _round_trip(endless) == b"ping\n"
        quick.sendall(b"quick\n")
        server.shutdown()
        began = time.monotonic()
        server.server_close()
        thread.join(TIMEOUT)
        took = time.monotonic() - began
        assert quick.recv(100) == b"done\n"
        assert _closed_by_server(endless, TIMEOUT)
    finally:
        server.shutdown() if thread.is_alive() else None
        thread.join(TIMEOUT)
        quick.close()
        endless.close()
    assert took < 0.8 + 2.0, took
    stats = server.stats()
    assert (stats["drain_finished_total"], stats["drain_cut_total"]) == (1, 1)
    assert stats["connections_active"] == 0


def test_drain_timeout_zero_cuts_at_once(cy_ss):
    server = _server(cy_ss, "ThreadingTCPServer", _echo(cy_ss), drain_timeout=0)
    with serving(server, close=False):
        c = connect(server.server_address)
        assert _round_trip(c) == b"ping\n"
    began = time.monotonic()
    server.server_close()
    assert time.monotonic() - began < 1.0
    assert _closed_by_server(c, TIMEOUT)
    c.close()
    assert server.stats()["drain_cut_total"] == 1


# --------------------------------------------------------------------------- stats


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_stats_equal_what_the_clients_counted(cy_ss, name):
    server = _server(cy_ss, name, _echo(cy_ss), max_connections_per_client=4)
    server.handle_error = lambda request, address: None
    sent = received = 0
    with serving(server):
        held = [_connect_from(ATTACKER, server.server_address) for _ in range(4)]
        rejected = [_connect_from(ATTACKER, server.server_address) for _ in range(3)]
        for c in rejected:
            assert _closed_by_server(c, TIMEOUT)
            c.close()
        for i, c in enumerate(held):
            for j in range(i + 1):
                payload = b"%d-%d %s\n" % (i, j, b"x" * (100 * j))
                assert _round_trip(c, payload) == payload
                sent += len(payload)
                received += len(payload)
        stats = server.stats()
        assert stats["connections_active"] == 4
        assert stats["bytes_received_total"] == sent
        with connect(server.server_address) as failing:
            failing.sendall(b"boom\n")
            sent += 5
            assert recv_until_eof(failing) == b""
        for c in held:
            c.close()
        assert wait_for(lambda: server.stats()["connections_active"] == 0)
        stats = server.stats()
    assert stats["connections_total"] == 4 + 3 + 1
    assert stats["connections_rejected_total"] == 3
    assert stats["handler_errors_total"] == 1
    assert stats["bytes_received_total"] == sent
    assert stats["bytes_sent_total"] == received
    assert stats["accept_errors_total"] == 0
    assert stats["uptime_seconds"] > 0
    assert stats["engine"] == cy_ss._engine.current().name


def test_stats_model_figures(cy_ss):
    hold = threading.Event()

    class H(cy_ss.BaseRequestHandler):
        def handle(self):
            hold.wait(TIMEOUT)

    server = _server(cy_ss, "ThreadPoolTCPServer", H, max_threads=4)
    with serving(server):
        clients = [connect(server.server_address) for _ in range(3)]
        try:
            assert wait_for(lambda: server.stats()["pool_threads_busy"] == 3)
            stats = server.stats()
            assert stats["pool_threads_max"] == 4 and stats["model"] == "pool"
        finally:
            hold.set()
            for c in clients:
                c.close()
        assert wait_for(lambda: server.stats()["pool_threads_busy"] == 0)
        assert server.stats()["pool_threads_idle"] == 3


def test_stats_count_greenlets_and_the_cooperative_socket(cy_ss):
    class H(cy_ss.BaseRequestHandler):
        def handle(self):
            data = self.request.recv(100)
            self.request.sendall(data * 2)
            self.request.recv(1)

    server = _server(cy_ss, "GreenletTCPServer", H)
    with serving(server):
        with connect(server.server_address) as c:
            c.sendall(b"abc")
            got = b""
            while len(got) < 6:
                got += c.recv(100)
            assert server.stats()["greenlets_running"] == 1
        assert wait_for(lambda: server.stats()["connections_active"] == 0)
    stats = server.stats()
    assert (stats["bytes_received_total"], stats["bytes_sent_total"]) == (3, 6)


def test_accept_errors_are_counted(cy_ss):
    class Failing(cy_ss.TCPServer):
        failures = 0

        def get_request(self):
            if self.failures < 3:
                self.failures += 1
                self.socket.accept()[0].close()
                raise OSError(errno.ECONNABORTED, "aborted on purpose")
            return self.socket.accept()

    server = Failing((HOST, 0), _echo(cy_ss))
    with serving(server):
        for _ in range(3):
            with connect(server.server_address) as c:
                recv_until_eof(c)
        with connect(server.server_address) as c:
            assert _round_trip(c) == b"ping\n"
    assert server.stats()["accept_errors_total"] == 3


def test_counters_twins_agree(cy_ss):
    engine = cy_ss._engine.current()
    counters, meter = engine.Counters(), engine.Meter()
    meter.received += 5
    meter.sent += 7
    counters.fold(meter)
    counters.fold(meter)
    counters.connection_opened()
    counters.drained(2, 1)
    counters.idle_closed(3)
    assert (counters.bytes_received_closed, counters.bytes_sent_closed) == (10, 14)
    assert (counters.connections_total, counters.drain_finished_total,
            counters.drain_cut_total, counters.idle_closed_total) == (1, 2, 1, 3)


def test_counters_are_exact_under_threads(cy_ss):
    engine = cy_ss._engine.current()
    counters = engine.Counters()

    def bump():
        for _ in range(20000):
            counters.handler_error()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.handler_errors_total == 80000


# --------------------------------------------------------------------------- inherited sockets


@pytest.mark.parametrize("name", MODEL_SERVERS + ["TCPServer"])
def test_from_socket_serves_without_binding(cy_ss, name):
    calls = []

    class Hooked:
        def server_bind(self):
            calls.append("bind")

        def server_activate(self):
            calls.append("activate")

    listener = socket.create_server((HOST, 0), backlog=32)
    cls = type("S", (Hooked, getattr(cy_ss, name)), {})
    server = cls.from_socket(listener, _echo(cy_ss))
    assert server.socket is listener and calls == []
    assert server.server_address == listener.getsockname()
    with serving(server):
        with connect(server.server_address) as c:
            assert _round_trip(c) == b"ping\n"
    assert listener.fileno() == -1


def test_from_socket_ipv6(cy_ss):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    server = cy_ss.ThreadingTCPServer.from_socket(listener, _echo(cy_ss))
    with serving(server):
        with connect(server.server_address[:2], family=socket.AF_INET6) as c:
            assert _round_trip(c) == b"ping\n"


def test_from_socket_refuses_the_wrong_type(cy_ss):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, 0))
        with pytest.raises(ValueError, match="SOCK_DGRAM"):
            cy_ss.TCPServer.from_socket(udp, cy_ss.BaseRequestHandler)


LISTEN_FDS_CHILD = r"""
import json, os, socket, sys
import cysocketserver
mode = sys.argv[1]
tcp = socket.create_server(("127.0.0.1", 0))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
# Through high numbers first: the sockets themselves may have been given 3 or 4.
os.dup2(tcp.fileno(), 100)
os.dup2(udp.fileno(), 101)
tcp.close(); udp.close()
os.dup2(100, 3)
os.dup2(101, 4)
os.close(100); os.close(101)
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_PID"] = str(os.getpid() + (1 if mode == "other-pid" else 0))
os.environ["LISTEN_FDNAMES"] = "web:dns"
got = cysocketserver.listen_fds(with_names=True)
print(json.dumps({
    "sockets": [[name, s.fileno(), int(s.family), int(s.type), os.get_inheritable(s.fileno())]
                for name, s in got],
    "env": [k for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES") if k in os.environ],
}))
"""


@pytest.mark.parametrize("mode", ["mine", "other-pid"])
def test_listen_fds(mode, tmp_path):
    import json

    proc = subprocess.run([sys.executable, "-c", LISTEN_FDS_CHILD, mode], capture_output=True,
                          text=True, timeout=TIMEOUT * 3, env=subprocess_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["env"] == []   # removed after use, in both cases
    if mode == "other-pid":
        assert result["sockets"] == []
    else:
        assert result["sockets"] == [
            ["web", 3, int(socket.AF_INET), int(socket.SOCK_STREAM), False],
            ["dns", 4, int(socket.AF_INET), int(socket.SOCK_DGRAM), False],
        ]


# --------------------------------------------------------------------------- help()


def test_every_public_class_and_hook_has_a_docstring(cy_ss):
    import inspect

    hooks = ("serve_forever", "shutdown", "handle_request", "service_actions", "server_close",
             "verify_request", "process_request", "finish_request", "shutdown_request",
             "close_request", "handle_error", "handle_timeout", "stats", "setup", "handle",
             "finish")
    missing = []
    for name in cy_ss.__all__:
        obj = getattr(cy_ss, name)
        if inspect.isclass(obj):
            # Its own docstring: help() shows a base class's only further down.
            if not obj.__doc__:
                missing.append(name)
            for hook in hooks:
                if hasattr(obj, hook) and not inspect.getdoc(getattr(obj, hook)):
                    missing.append("%s.%s" % (name, hook))
        elif callable(obj) and not inspect.getdoc(obj):
            missing.append(name)
    assert missing == []


# --------------------------------------------------------------------------- behind a proxy


class _OwnProcessRequest:
    """A process_request() of the user's: the PROXY header is read in the serving thread."""

    def process_request(self, request, client_address):
        super().process_request(request, client_address)


@pytest.mark.parametrize("name,own", [(name, False) for name in MODEL_SERVERS]
                         + [("ThreadingTCPServer", True)])
def test_per_client_limit_counts_the_client_the_proxy_names(cy_ss, name, own):
    bases = ((_OwnProcessRequest,) if own else ()) + (getattr(cy_ss, name),)
    cls = type("S", bases, {"proxy_protocol": "v1", "max_connections_per_client": 1,
                            "request_queue_size": 64})
    server = cls((HOST, 0), _echo(cy_ss))

    def via_proxy(client):
        sock = connect(server.server_address)
        sock.sendall(b"PROXY TCP4 %s 10.0.0.2 40000 80\r\n" % client)
        return sock

    with serving(server):
        # All from the proxy's own address, for two different clients: both are served.
        first, other = via_proxy(b"10.0.0.1"), via_proxy(b"10.0.0.9")
        try:
            assert _round_trip(first) == b"ping\n"
            assert _round_trip(other) == b"ping\n"
            with via_proxy(b"10.0.0.1") as second:   # the first client's second connection
                assert _closed_by_server(second, TIMEOUT)
        finally:
            first.close()
            other.close()
    stats = server.stats()
    assert stats["connections_rejected_total"] == 1
    assert stats["connections_total"] == 3
