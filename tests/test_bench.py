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


def this_package_env():
    """The environment for a benchmark subprocess: it must run the very package this test
    imported (installed or in-tree)."""
    import cysocketserver

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(cysocketserver.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


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
    env = this_package_env()
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
        # The ratio is taken round by round (the rounds ran in turn), then its median.
        per_round = [mine["rate"] / base["rate"] for base, mine in
                     zip(impls["stdlib"]["rounds"], impls["cysocketserver"]["rounds"])]
        ratio = sum(per_round) / 2
        assert entry["ratios"]["cysocketserver"]["median"] == pytest.approx(ratio)
        row = next(line for line in proc.stdout.splitlines()
                   if line.startswith(entry["workload"]["name"] + " "))
        assert f"{ratio:.2f}x" in row
        assert f"{min(per_round):.2f}-{max(per_round):.2f}" in row
        # The last two cells: the server's CPU time per request, stdlib then cysocketserver.
        assert row.split()[-2:] == [f"{medians[impl]['server_cpu_us']:.1f}"
                                    for impl in ("stdlib", "cysocketserver")]
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
    out = tmp_path / "bench.json"
    env = this_package_env()
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
    out = tmp_path / "prefork.json"
    env = this_package_env()
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


# -- the report: width, spread, noise, default set, plot ------------------------------------

def fake_round(rate, size=64):
    return {"rate": rate, "mb_per_s": rate * size / 1e6, "errors": {}, "error_total": 0,
            "latency_us": {"p50": 180.0, "p99": 2500.0, "p99.9": 9000.0, "samples": 1000},
            "server_cores": 0.95, "client_cores": 0.6}


def fake_results(rates, quick=False):
    """Results as the harness makes them: rates is {workload: {impl: [rate of each round]}}."""
    from cysocketserver.bench.harness import ratios_of, summarize
    from cysocketserver.bench.workloads import by_name

    impls = list(dict.fromkeys(i for by_impl in rates.values() for i in by_impl))
    results = {
        "machine": {"python": "3.12.3", "cores": 2, "usable_cores": 2,
                    "load_average_at_start": [0.1, 0.1, 0.1]},
        "settings": {"duration": 2.0, "warmup": 0.5, "rounds": 3, "quick": quick,
                     "implementations": impls,
                     "load_client": "cysocketserver._loadgen (epoll)"},
        "engines": {"cysocketserver": "compiled"},
        "notes": [],
        "workloads": [],
        "elapsed_seconds": 201.0,
    }
    for name, by_impl in rates.items():
        workload = by_name(name)
        entry = {"workload": workload.as_dict(), "unit": workload.unit, "implementations": {}}
        for impl, per_round in by_impl.items():
            rounds = [fake_round(rate, workload.size) for rate in per_round]
            entry["implementations"][impl] = {"engine": impl, "rounds": rounds,
                                              "median": summarize(rounds)}
        entry["ratios"] = ratios_of(entry)
        results["workloads"].append(entry)
    return results


def table_row(text, name):
    return next(line for line in text.splitlines() if line.startswith(name + " "))


STEADY = [20000, 21000, 19500]


def test_table_fits_in_its_width_with_every_default_row_and_the_peers():
    from cysocketserver.bench import report
    from cysocketserver.bench.workloads import DEFAULT

    rates = {}
    for name in DEFAULT + ["stream-4x4k"]:
        rates[name] = {"stdlib": STEADY, "cysocketserver": [520000, 1260000, 999999],
                       "asyncio": STEADY, "uvloop": STEADY, "gevent": STEADY,
                       "reference": [1900000, 1800000, 2100000]}
    results = fake_results(rates)
    results["notes"].append("http rows: the load client's HTTP/1.1 keep-alive mode (a fixed "
                            "GET; the status, Content-Length and body of every response "
                            "checked); wrk is not used")
    results["workloads"][0]["implementations"]["stdlib"]["error"] = (
        "stdlib server failed to start: " + "a long traceback line " * 10)
    text = report.format_table(results)
    assert max(len(line) for line in text.splitlines()) <= report.WIDTH == 100
    assert "p99" not in text.split("\n\n")[1]           # the table has no latency columns
    for name in DEFAULT:
        assert table_row(text, name)
    wide = report.format_table(results, wide=True)
    assert "p99 latency" in wide and "2.50 ms" in table_row(wide, "line-16x64")


def test_ratio_spread_from_per_round_rates():
    from cysocketserver.bench.ratios import paired_ratios, spread_of

    base = [fake_round(100), fake_round(200), fake_round(100)]
    mine = [fake_round(260), fake_round(274), fake_round(229)]
    ratios = paired_ratios(base, mine)
    assert ratios == pytest.approx([2.6, 1.37, 2.29])
    spread = spread_of(ratios)
    assert (spread.median, spread.low, spread.high, spread.rounds) == pytest.approx(
        (2.29, 1.37, 2.6, 3))
    assert spread.spread == pytest.approx((2.6 - 1.37) / 2.29)
    assert spread.noisy
    # A failed round on either side leaves that pair out; MB/s rows compare MB/s.
    failed = {"error": "server process exited"}
    assert paired_ratios(base, [failed, mine[1], mine[2]]) == pytest.approx([1.37, 2.29])
    assert paired_ratios([failed] + base[1:], mine) == pytest.approx([1.37, 2.29])
    stream = [dict(fake_round(100), mb_per_s=10.0)], [dict(fake_round(100), mb_per_s=25.0)]
    assert paired_ratios(*stream, unit="MB/s") == [2.5]
    assert spread_of([]) is None
    even = spread_of([1.0, 1.5, 2.0, 3.0])
    assert (even.median, even.low, even.high) == (1.75, 1.0, 3.0)


@pytest.mark.parametrize("ratios, noisy", [
    ([2.0, 2.05, 1.98], False),
    ([1.0, 1.19], False),           # 17% of the median apart
    ([1.0, 1.25], True),            # 22%
    ([2.6, 1.37, 2.29], True),
    ([26.0], True),                 # one round says nothing of its spread
])
def test_spread_marks_noise_past_its_threshold(ratios, noisy):
    from cysocketserver.bench.ratios import NOISY_SPREAD, spread_of

    assert NOISY_SPREAD == 0.20
    assert spread_of(ratios).noisy is noisy


def test_noisy_rows_are_marked_and_steady_rows_are_not():
    from cysocketserver.bench import report

    base = [10000, 10000, 10000]
    results = fake_results({
        "line-16x64": {"stdlib": base, "cysocketserver": [26000, 13700, 22900]},
        "udp-16": {"stdlib": base, "cysocketserver": [20000, 20500, 19800]},
    })
    text = report.format_table(results)
    noisy_row, steady_row = table_row(text, "line-16x64"), table_row(text, "udp-16")
    assert "2.29x" in noisy_row and "1.37-2.60" in noisy_row and report.NOISY in noisy_row
    assert "2.00x" in steady_row and "1.98-2.05" in steady_row
    assert report.NOISY not in steady_row
    assert any(line.startswith(report.NOISY + " = ") for line in text.splitlines())

    results = fake_results({"udp-16": {"stdlib": base, "cysocketserver": [20000, 20500, 19800]}})
    assert report.NOISY not in report.format_table(results)


def test_quick_runs_say_they_are_a_smoke_test():
    from cysocketserver.bench import report
    from cysocketserver.bench.harness import build_parser

    rates = {"udp-16": {"stdlib": STEADY, "cysocketserver": STEADY}}
    assert "smoke test" in report.format_table(fake_results(rates, quick=True))
    assert "smoke test" not in report.format_table(fake_results(rates))
    assert "smoke test" in " ".join(build_parser().format_help().split())


def test_default_set_has_the_greenlet_and_pool_rows_and_a_bounded_run_time():
    import argparse

    from cysocketserver.bench.harness import (build_parser, estimated_seconds, finish_options,
                                              implementations)
    from cysocketserver.bench.workloads import DEFAULT, by_name

    servers = {by_name(name).server for name in DEFAULT}
    assert {"GreenletTCPServer", "ThreadPoolTCPServer", "ThreadingTCPServer"} <= servers
    assert any(by_name(name).proxy for name in DEFAULT)
    parser = build_parser()
    for argv, most in (([], 240), (["--quick"], 60)):
        opts = finish_options(parser.parse_args(argv), parser)
        assert isinstance(opts, argparse.Namespace) and opts.workload == DEFAULT
        # Every proxy the proxy rows may have (HAProxy counted as if installed).
        processes = sum(len(implementations(by_name(name), opts, [], opts.proxies))
                        for name in DEFAULT)
        assert processes >= sum(2 + by_name(name).reference for name in DEFAULT) + 2
        assert estimated_seconds(opts, processes) < most


def test_the_package_loads_nothing_of_the_bench():
    code = ("import sys, cysocketserver, cysocketserver.servers\n"
            "print(sorted(m for m in sys.modules if m.startswith('cysocketserver.bench')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_plot_has_a_logarithmic_ratio_axis_with_1x_marked(tmp_path):
    pytest.importorskip("matplotlib")
    from cysocketserver.bench import report

    results = fake_results({
        "line-1x64": {"stdlib": STEADY, "cysocketserver": [19800, 20800, 19000]},
        "line-16x64": {"stdlib": STEADY, "cysocketserver": [45000, 48000, 44000]},
        "greenlet-line-16x64": {"stdlib": STEADY, "cysocketserver": [520000, 546000, 500000],
                                "reference": [800000, 820000, 790000]},
    })
    fig = report.make_figure(results)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    labels = {tick.get_text() for tick in ax.get_yticklabels()}
    assert {"1×", "2×", "10×"} <= labels
    low, high = ax.get_ylim()
    assert low < 0.95 and high > 26 * 1.2        # every bar and its note inside the axes
    path = tmp_path / "ratios.png"
    report.plot(results, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the proxy rows ---------------------------------------------------------------------------

PROXY_ROWS = ["proxy-pingpong-16x64", "proxy-pingpong-100x64", "proxy-connect-16",
              "proxy-stream-8x64k"]


def test_proxy_workloads_are_listed_and_selectable(capsys):
    from cysocketserver.bench.harness import build_parser, finish_options, run

    parser = build_parser()
    assert run(finish_options(parser.parse_args(["--list"]), parser)) == 0
    listed = [line[2:].split()[0] for line in capsys.readouterr().out.splitlines()
              if line[2:].startswith("proxy-")]
    assert listed == PROXY_ROWS
    opts = finish_options(parser.parse_args(["--workload", "proxy-connect-16",
                                             "--proxies", "haproxy-nbthread1"]), parser)
    assert opts.workload == ["proxy-connect-16"] and opts.proxies == ["haproxy-nbthread1"]
    with pytest.raises(SystemExit):
        finish_options(parser.parse_args(["--proxies", "nginx"]), parser)


def test_bench_proxy_row_runs_both_relays_and_the_proxy_command(tmp_path):
    """One proxy row, briefly: the relay on the blocks and the stdlib's relay with their rates,
    ratio and CPU per request, the proxy command beside them, and HAProxy where installed."""
    from cysocketserver.bench import relays


    out = tmp_path / "bench.json"
    env = this_package_env()
    proc = subprocess.run(
        [sys.executable, "-m", "cysocketserver", "bench", "--workload", "proxy-pingpong-16x64",
         "--rounds", "2", "--duration", "0.3", "--warmup", "0.1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    (entry,) = results["workloads"]
    impls = entry["implementations"]
    installed = relays.haproxy_path() is not None
    assert set(impls) == {"stdlib", "cysocketserver", "proxy-command"} | (
        {"haproxy"} if installed else set())
    for impl in impls:
        median = impls[impl]["median"]
        assert median["rounds"] == 2, impl
        assert median["rate"] > 0 and not median["errors"], impl
        assert median["server_cpu_us"] > 0, impl
    ratio = entry["ratios"]["cysocketserver"]["median"]
    row = table_row(proc.stdout, "proxy-pingpong-16x64")
    assert f"{ratio:.2f}x" in row
    assert row.split()[-2:] == [f"{impls[impl]['median']['server_cpu_us']:.1f}"
                                for impl in ("stdlib", "cysocketserver")]
    headers = [line.split() for line in proc.stdout.splitlines()
               if line.startswith("workload ") and "proxy" in line]
    # The rates, the CPU per request, and (with HAProxy) the ratios to it.
    assert len(headers) == 2 + installed
    assert all(("haproxy" in header) is installed for header in headers[:2])
    assert ("HAProxy is not installed" in proc.stdout) is not installed


def test_haproxy_is_skipped_with_a_note_where_it_is_not_installed(monkeypatch):
    from cysocketserver.bench import relays, report

    monkeypatch.setattr(relays, "haproxy_path", lambda: None)
    found, notes = relays.available(["haproxy", "haproxy-nbthread1", "proxy-command"])
    assert found == ["proxy-command"]
    assert len(notes) == 2 and all("not installed" in note for note in notes)
    results = fake_results({"proxy-connect-16": {"stdlib": STEADY, "cysocketserver": STEADY,
                                                 "proxy-command": STEADY}})
    text = report.format_table(results)
    assert "proxy cmd" in text and "haproxy 1t" not in text
    assert "HAProxy's in the same round" not in text
    results = fake_results({"proxy-connect-16": {"stdlib": STEADY, "cysocketserver": STEADY,
                                                 "haproxy": [10000, 10500, 9750],
                                                 "proxy-command": STEADY}})
    text = report.format_table(results)
    assert max(len(line) for line in text.splitlines()) <= report.WIDTH
    ratios = text.split("HAProxy's in the same round")[1]
    assert table_row(ratios, "proxy-connect-16").split() == ["proxy-connect-16", "2.00x",
                                                            "2.00x", "2.00x"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_server_cpu_counts_the_worker_processes_too():
    """The proxy command with --workers runs its relays in child processes: their CPU time
    is the server's."""
    from cysocketserver.bench.harness import process_cpu_seconds

    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    end = time.process_time() + 0.4\n"
            "    while time.process_time() < end: pass\n"
            "    print('done', flush=True); time.sleep(30); os._exit(0)\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "done\n"
        assert process_cpu_seconds(proc.pid) >= 0.35
    finally:
        proc.kill()
        proc.wait()
