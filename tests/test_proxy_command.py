"""``python -m cysocketserver proxy`` as operators run it: real processes, real signals,
loopback only.  The upstreams are small in-test servers that say who they are (and whom they
see as the client), then echo until the client's end, then say END."""
import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import cysocketserver
from support_haproxy import HAPROXY, free_port, running as haproxy
from support_net import HOST, TIMEOUT, subprocess_env


# -- the upstreams ---------------------------------------------------------------------------------

class _Tell(cysocketserver.StreamRequestHandler):
    """Says "NAME CLIENT_HOST", echoes until the client's end, then says END."""

    def handle(self):
        self.wfile.write(b"%s %s\n" % (self.server.name.encode(),
                                       self.client_address[0].encode()))
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
            self.request.sendall(b"END\n")
        except ConnectionError:
            pass        # a client that left without reading everything


class _Upstream(cysocketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@contextlib.contextmanager
def upstreams(*names, proxy_protocol=None):
    """Upstream servers, one per name, serving in threads; yields {name: server}."""
    servers = {}
    try:
        for name in names:
            server = type("Up", (_Upstream,), {"proxy_protocol": proxy_protocol})(
                (HOST, 0), _Tell)
            server.name = name
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[name] = server
        yield servers
    finally:
        for server in servers.values():
            stop_upstream(server)


def stop_upstream(server):
    if server.socket.fileno() >= 0:
        server.shutdown()
        server.server_close()


def address(server):
    return "%s:%d" % server.server_address[:2]


# -- the proxy -------------------------------------------------------------------------------------

class Proxy:
    """A running ``proxy`` command: its listening port, its metrics port, its stderr."""

    def __init__(self, args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cysocketserver", "proxy", "--listen", "%s:0" % HOST, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
        line = self._line()
        match = re.search(r" on %s:(\d+) -> " % re.escape(HOST), line)
        assert match, line + self.stderr()
        self.port = int(match.group(1))
        self.metrics_port = None
        if "--metrics" in args:
            self.metrics_port = int(re.search(r":(\d+)/metrics", self._line()).group(1))

    def _line(self):
        # A thread, not select(): the second line may already sit in the reader's buffer.
        lines = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(TIMEOUT)
        assert lines and lines[0], "the proxy said nothing: " + self.stderr()
        return lines[0].decode()

    def stderr(self):
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode()

    def connect(self, source=None):
        sock = socket.create_connection((HOST, self.port), timeout=TIMEOUT,
                                        source_address=(source, 0) if source else None)
        return sock

    def who(self, source=None):
        """(upstream name, the client host it saw) for one new connection, closed after."""
        with self.connect(source) as sock:
            return hello(sock)

    def get(self, path):
        """(status, body) of GET path on the metrics endpoint."""
        try:
            with urllib.request.urlopen("http://%s:%d%s" % (HOST, self.metrics_port, path),
                                        timeout=TIMEOUT) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name, upstream):
        _status, text = self.get("/metrics")
        match = re.search(r'^cysocketserver_upstream_%s\{upstream="%s"\} (\d+)$'
                          % (name, re.escape(upstream)), text, re.M)
        assert match, text
        return int(match.group(1))

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        status = self.proc.wait(TIMEOUT)
        return status, self.proc.stderr.read().decode()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@contextlib.contextmanager
def proxy(*args):
    running = Proxy([str(arg) for arg in args])
    try:
        yield running
    finally:
        running.close()


def hello(sock):
    """The upstream's first line, split: (name, client host)."""
    line = b""
    while not line.endswith(b"\n"):
        data = sock.recv(1)
        assert data, "closed before the upstream said who it is (%r)" % line
        line += data
    name, client = line.decode().split()
    return name, client


def eventually(condition, timeout=TIMEOUT, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail("%s did not hold within %g s" % (what, timeout))


def upstream_args(servers, **options):
    args = []
    for name, server in servers.items():
        args += ["--upstream", address(server) + options.get(name, "")]
    return args


# -- balancing -------------------------------------------------------------------------------------

def test_roundrobin_spreads_by_weight():
    with upstreams("a", "b", "c") as servers, \
            proxy(*upstream_args(servers, b=",weight=2", c=",weight=3")) as running:
        seen = [running.who()[0] for _ in range(12)]
    assert (seen.count("a"), seen.count("b"), seen.count("c")) == (2, 4, 6), seen
    # Smooth: the heaviest is never picked three times running in a cycle of six.
    assert "ccc" not in "".join(seen), seen


def test_leastconn_prefers_the_idle_upstream():
    with upstreams("a", "b", "c") as servers, \
            proxy("--balance", "leastconn", *upstream_args(servers)) as running:
        held = [running.connect() for _ in range(3)]
        try:
            names = [hello(sock)[0] for sock in held]
            assert sorted(names) == ["a", "b", "c"]
            for index in (1, 0):
                # Two upstreams hold a connection each, one holds none: it takes the next.
                idle = names[index]
                held[index].close()
                time.sleep(0.3)      # the proxy sees that end
                held[index] = running.connect()
                assert hello(held[index])[0] == idle
        finally:
            for sock in held:
                sock.close()


def test_source_keeps_a_client_on_its_upstream_and_removing_one_moves_only_its_clients(tmp_path):
    clients = ["127.0.0.%d" % number for number in range(2, 26)]
    with upstreams("a", "b", "c") as servers:
        conf = tmp_path / "proxy.toml"
        conf.write_text('balance = "source"\nupstreams = [%s]\n'
                        % ", ".join('"%s"' % address(s) for s in servers.values()))
        with proxy("--config", conf) as running:
            before = {client: running.who(client) for client in clients}
            assert {name for name, _seen in before.values()} == {"a", "b", "c"}
            again = {client: running.who(client) for client in clients}
            assert again == before
            # b leaves the configuration: only b's clients move.
            conf.write_text('balance = "source"\nupstreams = ["%s", "%s"]\n'
                            % (address(servers["a"]), address(servers["c"])))
            running.proc.send_signal(signal.SIGHUP)
            eventually(lambda: all(running.who(client)[0] != "b" for client in clients
                                   if before[client][0] == "b"), what="the reload")
            after = {client: running.who(client)[0] for client in clients}
            for client, (name, _seen) in before.items():
                if name != "b":
                    assert after[client] == name, client


# -- failures, health --------------------------------------------------------------------------

def test_a_killed_upstream_costs_its_new_clients_nothing():
    with upstreams("a", "b", "c") as servers, \
            proxy("--health-check-interval", "0.2", "--fall", "2", "--metrics", "%s:0" % HOST,
                  *upstream_args(servers)) as running:
        assert {running.who()[0] for _ in range(6)} == {"a", "b", "c"}
        stop_upstream(servers["b"])
        # Every client is served at once, from the first connection after the kill.
        seen = [running.who()[0] for _ in range(12)]
        assert "b" not in seen and set(seen) == {"a", "c"}
        eventually(lambda: running.metric("up", address(servers["b"])) == 0, what="b down")
        assert running.metric("up", address(servers["a"])) == 1
        status, stderr = running.stop()
    assert status == 0
    assert "Traceback" not in stderr
    assert len(re.findall(r"upstream %s is down" % re.escape(address(servers["b"])),
                          stderr)) == 1, stderr


def test_health_fall_and_rise_flip_the_up_gauge_and_readyz():
    with upstreams("a") as servers:
        port = servers["a"].server_address[1]
        with proxy("--health-check-interval", "0.1", "--rise", "2", "--fall", "2",
                   "--metrics", "%s:0" % HOST, "--upstream", "%s:%d" % (HOST, port)) as running:
            name = "%s:%d" % (HOST, port)
            assert running.get("/healthz")[0] == 200
            assert running.get("/readyz")[0] == 200
            assert running.metric("up", name) == 1
            stop_upstream(servers["a"])
            eventually(lambda: running.metric("up", name) == 0, what="the fall")
            assert running.get("/readyz")[0] == 503
            assert running.get("/healthz")[0] == 200
            with running.connect() as sock:         # no upstream: the client is closed
                try:
                    assert sock.recv(100) == b""
                except ConnectionResetError:
                    pass
            back = _Upstream((HOST, port), _Tell)
            back.name = "a-again"
            threading.Thread(target=back.serve_forever, daemon=True).start()
            try:
                eventually(lambda: running.metric("up", name) == 1, what="the rise")
                assert running.get("/readyz")[0] == 200
                assert running.who()[0] == "a-again"
                status, stderr = running.stop()
            finally:
                stop_upstream(back)
    assert status == 0
    assert "upstream %s is down" % name in stderr and "upstream %s is up" % name in stderr


def _unanswering_listener():
    """A loopback listener whose accept queue is full: a new connect is never answered."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    return listener, fillers


def test_a_connect_never_answered_times_out_and_goes_to_the_next_upstream():
    listener, fillers = _unanswering_listener()
    try:
        with upstreams("good") as servers, \
                proxy("--connect-timeout", "0.5", "--health-check-interval", "0",
                      "--upstream", "%s:%d" % listener.getsockname(),
                      *upstream_args(servers)) as running:
            began = time.monotonic()
            seen = [running.who()[0] for _ in range(4)]
            took = time.monotonic() - began
            status, stderr = running.stop()
    finally:
        for sock in fillers + [listener]:
            sock.close()
    assert seen == ["good"] * 4
    # Round robin sends two of the four to the silent one first: half a second each.
    assert 0.9 <= took < 0.9 + TIMEOUT / 2, took
    assert status == 0
    assert "timed out after 0.5 s" in stderr and "Traceback" not in stderr


# -- the connections themselves --------------------------------------------------------------------

def test_half_close_passes_through():
    with upstreams("a") as servers, proxy(*upstream_args(servers)) as running:
        with running.connect() as sock:
            sock.sendall(b"first\nsecond\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while data := sock.recv(65536):
                received += data
    # The upstream saw the end, then still sent its last words back through the proxy.
    assert received == b"a 127.0.0.1\nfirst\nsecond\nEND\n"


def test_idle_timeout_closes_a_silent_pair():
    with upstreams("a") as servers, \
            proxy("--idle-timeout", "0.5", *upstream_args(servers)) as running:
        with running.connect() as sock:
            assert hello(sock)[0] == "a"
            sock.sendall(b"ping\n")
            assert sock.recv(100) == b"ping\n"
            began = time.monotonic()
            rest = sock.recv(100)        # nothing more is said by either side
            waited = time.monotonic() - began
    assert rest in (b"", b"END\n")
    assert 0.3 <= waited < 5, waited


# -- reloading and stopping ------------------------------------------------------------------------

def test_sighup_takes_a_new_config_and_open_connections_keep_their_upstream(tmp_path):
    with upstreams("a", "b") as servers:
        conf = tmp_path / "proxy.toml"
        conf.write_text('upstreams = ["%s"]\n' % address(servers["a"]))
        with proxy("--config", conf) as running:
            kept = running.connect()
            with kept:
                assert hello(kept)[0] == "a"
                conf.write_text('upstreams = ["%s"]\nbalance = "leastconn"\n'
                                % address(servers["b"]))
                running.proc.send_signal(signal.SIGHUP)
                eventually(lambda: running.who()[0] == "b", what="the reload")
                kept.sendall(b"still a\n")
                assert kept.recv(100) == b"still a\n"
                # A broken file: one line, and the settings in use stay.
                conf.write_text('upstreams = ["%s"\n' % address(servers["a"]))
                running.proc.send_signal(signal.SIGHUP)
                time.sleep(0.5)
                assert [running.who()[0] for _ in range(3)] == ["b"] * 3
            status, stderr = running.stop()
    assert status == 0
    broken = [line for line in stderr.splitlines() if "settings in use stay" in line]
    assert len(broken) == 1, stderr
    assert "Traceback" not in stderr


def test_sigterm_drains_open_connections_then_exits_0():
    with upstreams("a") as servers, \
            proxy("--drain-timeout", "5", *upstream_args(servers)) as running:
        with running.connect() as sock:
            assert hello(sock)[0] == "a"
            running.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(b"during the drain\n")
            assert sock.recv(100) == b"during the drain\n"
        status = running.proc.wait(TIMEOUT)
        stderr = running.proc.stderr.read().decode()
    assert status == 0
    assert re.search(r"SIGTERM: stopped accepting; draining 1 connection\(s\) for up to 5 s",
                     stderr), stderr


def test_workers_share_the_clients_and_the_counters_sum():
    with upstreams("a", "b") as servers, \
            proxy("--workers", "2", "--metrics", "%s:0" % HOST, *upstream_args(servers)) as running:
        seen = [running.who()[0] for _ in range(8)]
        assert set(seen) == {"a", "b"}
        total = lambda: sum(running.metric("connections_total", address(server))
                            for server in servers.values())
        eventually(lambda: total() == 8, what="the workers' counts summed")
        assert running.get("/readyz")[0] == 200
        status, stderr = running.stop()
    assert status == 0, stderr


# -- mistakes --------------------------------------------------------------------------------------

def _run(*args):
    return subprocess.run([sys.executable, "-m", "cysocketserver", "proxy", *args],
                          capture_output=True, text=True, timeout=TIMEOUT * 2,
                          env=subprocess_env())


@pytest.mark.parametrize("args,message", [
    (["--listen", "127.0.0.1"], "expected HOST:PORT"),
    (["--listen", "127.0.0.1:0", "--upstream", "nowhere"], "expected HOST:PORT"),
    (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1,weight=0"], "weight"),
    (["--listen", "127.0.0.1:0"], "no upstream"),
    (["--listen", "127.0.0.1:0", "--config", "/nonexistent/proxy.toml"], "cannot read"),
])
def test_mistakes_are_one_line_and_exit_2(args, message):
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_port_in_use_and_a_broken_config_are_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        proc = _run("--listen", "%s:%d" % taken.getsockname(), "--upstream", "127.0.0.1:9")
    assert proc.returncode == 2 and "address in use" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.toml"
    broken.write_text("upstreams = [\n")
    proc = _run("--listen", "%s:0" % HOST, "--config", str(broken))
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# -- with HAProxy ----------------------------------------------------------------------------------

@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_haproxy_in_front_sends_proxy_v2_and_the_upstream_sees_the_client():
    with upstreams("a", proxy_protocol="any") as servers, \
            proxy("--accept-proxy", "v2", "--send-proxy", "v1", "--health-check-interval", "0",
                  *upstream_args(servers)) as running:
        front = free_port()
        config = ("frontend f\n    bind %s:%d\n    default_backend b\nbackend b\n"
                  "    server ours %s:%d send-proxy-v2\n" % (HOST, front, HOST, running.port))
        with haproxy(config, front):
            with socket.create_connection((HOST, front), timeout=TIMEOUT,
                                          source_address=("127.0.0.7", 0)) as sock:
                assert hello(sock) == ("a", "127.0.0.7")


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_haproxy_behind_accepts_our_proxy_v1():
    with upstreams("a", proxy_protocol="any") as servers:
        behind = free_port()
        config = ("frontend f\n    bind %s:%d accept-proxy\n    default_backend b\nbackend b\n"
                  "    server app %s send-proxy-v2\n" % (HOST, behind, address(servers["a"])))
        with haproxy(config, behind), \
                proxy("--send-proxy", "v1", "--health-check-interval", "0",
                      "--upstream", "%s:%d" % (HOST, behind)) as running:
            assert running.who("127.0.0.9") == ("a", "127.0.0.9")


def test_echo_metrics_endpoint_answers_healthz_and_readyz():
    proc = subprocess.Popen([sys.executable, "-m", "cysocketserver", "echo", "--port", "0",
                             "--metrics", "%s:0" % HOST], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=subprocess_env())
    try:
        proc.stdout.readline()
        port = int(re.search(r":(\d+)/metrics", proc.stdout.readline().decode()).group(1))
        for path in ("/healthz", "/readyz", "/metrics"):
            with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path),
                                        timeout=TIMEOUT) as reply:
                assert reply.status == 200, path
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen("http://%s:%d/nothing" % (HOST, port), timeout=TIMEOUT)
        assert missing.value.code == 404
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
