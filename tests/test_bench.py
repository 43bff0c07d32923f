"""The benchmark's load client and harness: the numbers they print must be trustworthy.

The load client must count what it is told (requests, bytes, latencies), check every echoed
byte, and report -- never raise on -- a server that corrupts, drops or hangs up; the harness
must run both implementations and compute its ratios and per-request CPU from what it ran.
"""
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

_loadgen = pytest.importorskip(
    "cysocketserver._loadgen", reason="the load client is compiled only (no pure engine)")

BACKENDS = ["auto", "poll"]


class EchoServer:
    """A loopback echo server in threads, optionally misbehaving.

    mangle(bytes) -> bytes changes what is echoed; lines_per_connection closes a TCP
    connection after that many lines.
    """

    def __init__(self, udp=False, mangle=None, lines_per_connection=None):
        self.mangle = mangle or (lambda data: data)
        self.lines_per_connection = lines_per_connection
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        if udp:
            self.sock.settimeout(0.2)
            target = self._serve_udp
        else:
            self.sock.listen(128)
            self.sock.settimeout(0.2)
            target = self._accept
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def _serve_udp(self):
        while not self.stopped:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.sock.sendto(self.mangle(data), addr)

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()

    def _serve_tcp(self, conn):
        with conn, conn.makefile("rb") as rfile:
            served = 0
            try:
                for line in rfile:
                    conn.sendall(self.mangle(line))
                    served += 1
                    if self.lines_per_connection and served >= self.lines_per_connection:
                        return
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def echo_server():
    servers = []

    def make(**kwargs):
        servers.append(EchoServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def flip_a_byte(data):
    """One payload byte changed (not the first 16, where the client keeps its own fields)."""
    if len(data) < 24:
        return data
    return data[:20] + bytes([data[20] ^ 1]) + data[21:]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["pingpong", "connect", "stream", "udp"])
def test_clean_echo_is_counted_without_errors(echo_server, mode, backend):
    server = echo_server(udp=mode == "udp")
    size = 100
    result = _loadgen.run(mode, "127.0.0.1", server.port, connections=4, size=size,
                          duration=0.4, warmup=0.1, backend=backend)
    expected = "epoll" if backend == "auto" and sys.platform.startswith("linux") else "poll"
    assert result["backend"] == expected
    assert result["error_total"] == 0, result["errors"]
    assert result["requests"] > 20
    assert result["rate"] == pytest.approx(result["requests"] / result["duration"])
    lat = result["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    if mode != "stream":
        # Every counted request came back whole (stream counts lines of the same size).
        assert result["mb_per_s"] == pytest.approx(result["rate"] * size / 1e6, rel=0.02)
    if mode == "connect":
        assert result["connects"] >= result["requests"]


@pytest.mark.parametrize("mode", ["pingpong", "stream", "udp"])
def test_corrupted_echo_is_reported(echo_server, mode):
    server = echo_server(udp=mode == "udp", mangle=flip_a_byte)
    result = _loadgen.run(mode, "127.0.0.1", server.port, connections=2, size=64,
                          duration=0.3, timeout=0.2)
    assert result["errors"]["mismatch"] > 0
    assert result["requests"] == 0


def test_short_echo_is_reported(echo_server):
    """A server that drops the last byte never completes a request: a timeout, not a hang."""
    server = echo_server(udp=True, mangle=lambda data: data[:-1])
    result = _loadgen.run("udp", "127.0.0.1", server.port, connections=2, size=64,
                          duration=0.3, timeout=0.05)
    assert result["requests"] == 0
    assert result["error_total"] > 0


def test_server_hanging_up_is_counted_and_the_client_reconnects(echo_server):
    server = echo_server(lines_per_connection=3)
    result = _loadgen.run("pingpong", "127.0.0.1", server.port, connections=2, size=64,
                          duration=0.4)
    assert result["errors"]["eof"] > 0
    assert result["connects"] > 2
    assert result["requests"] >= 3 * (result["connects"] - 2)


def test_refused_connections_are_counted():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connect() is refused
        result = _loadgen.run("pingpong", "127.0.0.1", port, connections=1, duration=0.2)
    assert result["requests"] == 0
    assert result["errors"]["refused"] > 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="gallop"), "mode must be one of"),
    (dict(connections=0), "connections"),
    (dict(size=0), "size"),
    (dict(mode="udp", size=70000), "65507"),
    (dict(host="192.0.2.1"), "loopback"),
])
def test_bad_settings_are_refused(kwargs, message):
    args = dict(mode="pingpong", host="127.0.0.1", port=9, duration=0.1)
    args.update(kwargs)
    mode, host, port = args.pop("mode"), args.pop("host"), args.pop("port")
    with pytest.raises(ValueError, match=message):
        _loadgen.run(mode, host, port, **args)


def test_bench_runs_both_implementations_and_reports_what_it_measured(tmp_path):
    import cysocketserver

    out = tmp_path / "bench.json"
    # The bench must run the very package this test imported (installed or in-tree).
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(cysocketserver.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run(
        [sys.executable, "-m", "cysocketserver", "bench", "--workload", "udp-16",
         "--workload", "line-16x64", "--rounds", "2", "--duration", "0.3", "--warmup", "0.1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    names = [entry["workload"]["name"] for entry in results["workloads"]]
    assert names == ["udp-16", "line-16x64"]
    for entry in results["workloads"]:
        impls = entry["implementations"]
        assert set(impls) == {"stdlib", "cysocketserver"}
        medians = {}
        for impl in ("stdlib", "cysocketserver"):
            median = impls[impl]["median"]
            assert median["rounds"] == 2
            assert median["rate"] > 0 and not median["errors"]
            assert median["server_cpu_us"] > 0
            medians[impl] = median
        ratio = medians["cysocketserver"]["rate"] / medians["stdlib"]["rate"]
        row = next(line for line in proc.stdout.splitlines()
                   if line.startswith(entry["workload"]["name"] + " "))
        assert f"{ratio:.2f}x" in row
        assert f"{medians['cysocketserver']['server_cpu_us']:.1f} µs" in row
    assert results["engines"]["cysocketserver"] == cysocketserver.IMPLEMENTATION


# -- the http mode --------------------------------------------------------------------------

HELLO = b"Hello world\n"


class FakeHttpServer:
    """Answers every request (read up to its blank line) with respond(n) -> bytes, n counting
    from 0 on each connection; the answer goes out in pieces of ``piece`` bytes.  close_after:
    hang up after that many answers."""

    def __init__(self, respond, piece=None, close_after=None):
        self.respond = respond
        self.piece = piece
        self.close_after = close_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        answered = 0
        with conn:
            try:
                while self.close_after is None or answered < self.close_after:
                    while b"\r\n\r\n" not in pending:
                        data = conn.recv(4096)
                        if not data:
                            return
                        pending += data
                    pending = pending.split(b"\r\n\r\n", 1)[1]
                    answer = self.respond(answered)
                    step = self.piece or len(answer)
                    for k in range(0, len(answer), step):
                        conn.sendall(answer[k:k + step])
                    answered += 1
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.sock.close()


def http_answer(body=HELLO, status=b"200 OK", headers=None):
    if headers is None:
        headers = [b"Content-Length: %d" % len(body)]
    return b"HTTP/1.1 " + status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@pytest.fixture
def http_server():
    servers = []

    def make(respond, **kwargs):
        servers.append(FakeHttpServer(respond, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def run_http(port, **kwargs):
    args = dict(connections=4, duration=0.4, warmup=0.1, expect=HELLO)
    args.update(kwargs)
    return _loadgen.run("http", "127.0.0.1", port, **args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_http_responses_are_counted_without_errors(http_server, backend):
    answer = http_answer(headers=[b"Server: fake", b"content-length:  12", b"X-Other: 1"])
    server = http_server(lambda n: answer)
    result = run_http(server.port, backend=backend)
    assert result["error_total"] == 0, result["errors"]
    assert result["requests"] > 20
    assert result["connects"] == 4          # keep-alive: one connection each, never reopened
    assert result["mb_per_s"] == pytest.approx(result["rate"] * len(answer) / 1e6, rel=0.02)


def test_http_response_in_small_pieces_is_put_together(http_server):
    server = http_server(lambda n: http_answer(), piece=3)
    result = run_http(server.port, connections=2)
    assert result["error_total"] == 0, result["errors"]
    assert result["requests"] > 5


def test_http_against_http_server_keep_alive():
    import http.server

    class Hello(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(HELLO)))
            self.end_headers()
            self.wfile.write(HELLO)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        result = run_http(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert result["error_total"] == 0, result["errors"]
    assert result["requests"] > 20 and result["connects"] == 4


@pytest.mark.parametrize("answer", [
    http_answer(body=b"Hello World\n"),                                        # another body
    http_answer(status=b"404 Not Found"),
    http_answer(headers=[]),                                                   # no length
    http_answer(headers=[b"Content-Length: 11"], body=HELLO[:11]),             # wrong length
    http_answer(headers=[b"Content-Length: 12", b"Content-Length: 12"]),       # said twice
    http_answer(headers=[b"Transfer-Encoding: chunked"], body=b"c\r\n" + HELLO + b"\r\n0\r\n\r\n"),
    http_answer() + b"extra",                                                  # more than asked
    b"SSH-2.0-OpenSSH\r\n\r\n",
], ids=["body", "status", "no-length", "length", "twice", "chunked", "extra", "not-http"])
def test_http_wrong_responses_are_reported(http_server, answer):
    server = http_server(lambda n: answer)
    result = run_http(server.port, connections=2, duration=0.3)
    assert result["requests"] == 0
    assert result["errors"]["mismatch"] > 0


def test_http_server_closing_after_each_response_costs_a_reconnect(http_server):
    server = http_server(lambda n: http_answer(), close_after=1)
    result = run_http(server.port, connections=2)
    assert result["requests"] > 0
    assert result["errors"]["eof"] > 0
    assert result["connects"] > 2


def test_http_options_are_for_the_http_mode_only():
    with pytest.raises(ValueError, match="http mode"):
        _loadgen.run("pingpong", "127.0.0.1", 9, duration=0.1, expect=b"x")


def test_bench_http_and_reference_rows(tmp_path):
    """The http workload runs on both implementations; a greenlet echo row brings the C
    reference server and the ratio to it."""
    import cysocketserver

    out = tmp_path / "bench.json"
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(cysocketserver.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run(
        [sys.executable, "-m", "cysocketserver", "bench", "--workload", "greenlet-http-16",
         "--workload", "greenlet-line-16x64", "--rounds", "1", "--duration", "0.3",
         "--warmup", "0.1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    http_entry, echo_entry = results["workloads"]
    assert set(http_entry["implementations"]) == {"stdlib", "cysocketserver"}
    for impl in ("stdlib", "cysocketserver"):
        median = http_entry["implementations"][impl]["median"]
        assert median["rounds"] == 1 and median["rate"] > 0 and not median["errors"]
        assert median["p50_us"] > 0
    assert set(echo_entry["implementations"]) == {"stdlib", "cysocketserver", "reference"}
    rates = {impl: data["median"]["rate"] for impl, data in echo_entry["implementations"].items()}
    row = next(line for line in proc.stdout.splitlines() if line.startswith("greenlet-line-16x64 "))
    assert row.rstrip().endswith(f"{rates['cysocketserver'] / rates['reference']:.2f}x")
    assert "HTTP/1.1 keep-alive mode" in proc.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sends SIGSTOP")
def test_prefork_bench_slow_worker_part(tmp_path):
    """The prefork benchmark's slow-worker part runs every case, prints its table, and its
    per-worker counts (from the metrics) add up to the connections the client made."""
    import cysocketserver

    out = tmp_path / "prefork.json"
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(cysocketserver.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run(
        [sys.executable, "-m", "cysocketserver.bench.prefork", "--quick", "--part", "slow",
         "--duration", "0.4", "--warmup", "0", "--json", str(out)],
        capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3. One worker stopped" in proc.stdout
    assert "p99.9" in proc.stdout and "share per worker %" in proc.stdout
    cases = json.loads(out.read_text())["parts"]["slow"]
    assert {(c["workers"], c["balancing"], c["stop"]) for c in cases} == {
        (n, b, s) for n in (2, 4) for b in ("shared", "reuseport")
        for s in ("none", "pause", "long")}
    for case in cases:
        (result,) = case["rounds"]
        assert result["requests"] > 0, case
        assert len(result["worker_connections"]) == case["workers"]
        if not result["error_total"] and not result["unfinished_at_stop"]:
            # Every connection the client opened was accepted by exactly one worker.
            assert sum(result["worker_connections"].values()) == result["connects"], case
        if case["stop"] == "none":
            assert not result["error_total"], case
