"""``python -m cysocketserver``: the echo command serves, and only the bench command loads the bench."""
import contextlib
import os
import select
import signal
import subprocess
import sys
import socket
import time

import pytest

from support_net import TIMEOUT, request_reply, subprocess_env


def read_line(proc, deadline, stream=None):
    """The next line the command writes on stdout (or ``stream``), by ``deadline``."""
    line = b""
    fd = (proc.stdout if stream is None else stream).fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, "the command printed nothing in time"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            assert chunk, "the command exited before it printed its line"
            line += chunk
    return line.decode()


@pytest.fixture
def echo_command(tmp_path):
    """Start ``python -X importtime -m cysocketserver echo``; yields (its address, stderr path)."""
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        # -X importtime: every module the command imports is written to stderr as it is imported.
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "cysocketserver", "echo", "--port", "0"],
            stdout=subprocess.PIPE, stderr=err, env=subprocess_env(), cwd=str(tmp_path))
    try:
        line = read_line(proc, time.monotonic() + TIMEOUT)
        yield address_of(line), err_path
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def address_of(line):
    """The (host, port) of the command's "... on HOST:PORT; ..." line ([::1]:PORT for IPv6)."""
    host_port = line.split(" on ", 1)[1].split(";", 1)[0]
    host, port = host_port.rsplit(":", 1)
    return host.strip("[]"), int(port)


def imported_modules(stderr_text):
    names = set()
    for line in stderr_text.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_echo_serves_without_importing_the_bench(echo_command):
    address, err_path = echo_command
    assert request_reply(address, b"hello\n") == b"hello\n"
    modules = imported_modules(err_path.read_text())
    assert "cysocketserver" in modules  # -X importtime did report the imports
    assert not {m for m in modules if m.startswith("cysocketserver.bench")
                or m == "cysocketserver._loadgen"}, sorted(modules)


def test_bench_command_lists_its_workloads():
    proc = subprocess.run([sys.executable, "-m", "cysocketserver", "bench", "--list"],
                          capture_output=True, text=True, timeout=TIMEOUT * 4,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "line-16x64" in proc.stdout


def test_bench_subpackage_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "cysocketserver.bench", "--list"],
                          capture_output=True, text=True, timeout=TIMEOUT * 4,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "line-16x64" in proc.stdout


def test_help_names_both_commands():
    proc = subprocess.run([sys.executable, "-m", "cysocketserver", "--help"],
                          capture_output=True, text=True, timeout=TIMEOUT * 4,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "echo" in proc.stdout and "bench" in proc.stdout


# -- the command as a service -----------------------------------------------------------------


def run_cli(*args, timeout=TIMEOUT * 4):
    return subprocess.run([sys.executable, "-m", "cysocketserver", *args], capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env())


@contextlib.contextmanager
def echo_service(*args):
    """``python -m cysocketserver echo ARGS``; yields (process, the line it printed)."""
    proc = subprocess.Popen([sys.executable, "-m", "cysocketserver", "echo", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env())
    try:
        yield proc, read_line(proc, time.monotonic() + TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def stop(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    status = proc.wait(TIMEOUT)
    return status, proc.stderr.read().decode()


@pytest.mark.parametrize("command", [[], ["echo"], ["bench"]])
def test_version(command):
    proc = run_cli(*command, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("cysocketserver ") and "engine" in proc.stdout


def test_no_command_prints_the_help_and_a_first_step_then_exits_2():
    proc = run_cli()
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: python -m cysocketserver")
    assert "echo" in proc.stderr and "bench" in proc.stderr
    assert "python -m cysocketserver echo --port 9999" in proc.stderr
    assert "nc 127.0.0.1 9999" in proc.stderr


def test_help_states_the_defaults():
    proc = run_cli("echo", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "every line a client sends comes back" in text
    for default in ("(default: 127.0.0.1)", "(default: 9999)", "(default: 10.0)",
                    "(default: info)", "(default: threading; sync with --udp)"):
        assert default in text, default


@pytest.mark.parametrize("args,message", [
    (["--port", "99999"], "port must be a number from 0 to 65535"),
    (["--port", "abc"], "port must be a number"),
    (["--host", "no-such-host.invalid"], "unknown host"),
    (["--udp", "--idle-timeout", "3"], "only for stream servers"),
    (["--max-connections", "0"], "must be at least 1"),
    (["--idle-timeout", "-1"], "must be a number of seconds"),
    (["--metrics", "nowhere"], "expected HOST:PORT"),
    (["--metrics", ":99999"], "port must be a number from 0 to 65535"),
    (["--workers", "0"], "must be at least 1"),
    (["--max-requests", "5"], "only with --workers"),
    (["--workers", "2", "--udp", "--max-requests", "5"], "counts connections"),
    (["--workers", "2", "--worker-timeout", "0.5"], "must exceed twice"),
])
def test_mistakes_are_one_line_and_exit_2(args, message):
    proc = run_cli("echo", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("echo", "--port", str(port))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m cysocketserver echo: error: cannot serve on 127.0.0.1:%d: address in use"
        % port]


@pytest.mark.parametrize("server,expected", [
    ([], "ThreadingTCPServer"),
    (["--server", "pool"], "ThreadPoolTCPServer"), (["--server", "greenlet"], "GreenletTCPServer"),
    (["--server", "sync"], "TCPServer"),
])
def test_server_models(server, expected):
    with echo_service("--port", "0", *server) as (proc, line):
        assert "(tcp, %s," % expected in line
        assert request_reply(address_of(line), b"one\ntwo\n") == b"one\ntwo\n"
        status, err = stop(proc)
        assert status == 0, err


@pytest.mark.parametrize("server,expected", [([], "UDPServer"), (["--server", "pool"], "ThreadPoolUDPServer")])
def test_udp(server, expected):
    with echo_service("--port", "0", "--udp", *server) as (proc, line):
        assert "(udp, %s," % expected in line
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            c.sendto(b"datagram", address_of(line))
            assert c.recvfrom(100)[0] == b"datagram"
        assert stop(proc)[0] == 0


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_and_dual_stack():
    with echo_service("--host", "::1", "--port", "0") as (proc, line):
        host, port = address_of(line)
        assert host == "::1"
        assert request_reply((host, port), b"six\n", family=socket.AF_INET6) == b"six\n"
        assert stop(proc)[0] == 0
    with echo_service("--host", "::", "--port", "0") as (proc, line):
        _host, port = address_of(line)
        assert request_reply(("::1", port), b"six\n", family=socket.AF_INET6) == b"six\n"
        assert request_reply(("127.0.0.1", port), b"four\n") == b"four\n"
        assert stop(proc)[0] == 0


def test_unix_socket(short_tmp):
    path = os.path.join(short_tmp, "echo.sock")
    with echo_service("--unix", path) as (proc, line):
        assert path in line
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(TIMEOUT)
            c.connect(path)
            c.sendall(b"unix\n")
            assert c.recv(100) == b"unix\n"
        assert stop(proc)[0] == 0
    assert not os.path.exists(path)


WITH_WORKERS = pytest.mark.parametrize("workers", [[], ["--workers", "2"]],
                                       ids=["one-process", "workers"])


def read_log_line(proc, containing):
    """The first line on the command's stderr that contains ``containing``, and the lines
    before it."""
    deadline = time.monotonic() + TIMEOUT
    before = []
    while True:
        line = read_line(proc, deadline, proc.stderr)
        if containing in line:
            return line, before
        before.append(line)


@WITH_WORKERS
def test_sigterm_drains_saying_how_many_and_how_long_then_exits_0(workers):
    with echo_service("--port", "0", "--drain-timeout", "30", *workers) as (proc, line):
        assert "SIGTERM: drain up to 30 s, exit 0" in line
        with socket.create_connection(address_of(line), timeout=TIMEOUT) as c:
            c.sendall(b"hi\n")
            assert c.recv(10) == b"hi\n"
            proc.send_signal(signal.SIGTERM)
            said, _before = read_log_line(proc, "draining")
            assert "SIGTERM: stopped accepting; draining 1 connection(s) for up to 30 s" in said
            assert proc.poll() is None   # draining: the open connection may still finish
            c.sendall(b"still\n")
            assert c.recv(10) == b"still\n"
        # The last connection ended: the drain is over long before its 30 s.
        began = time.monotonic()
        assert proc.wait(TIMEOUT) == 0
        assert time.monotonic() - began < TIMEOUT
        rest = proc.stderr.read().decode()
    assert "draining" not in rest, rest
    assert "SIGTERM: stopped in" in rest and "1 connection(s) finished, 0 cut" in rest, rest
    if workers:
        assert "1 connection(s) served by 2 worker(s)" in rest, rest


@WITH_WORKERS
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGQUIT, 131)])
def test_sigint_and_sigquit_with_a_client_connected_exit_at_once(workers, sig, status):
    with echo_service("--port", "0", "--drain-timeout", "30", *workers) as (proc, line):
        assert "SIGINT (Ctrl-C): stop at once, exit 130; SIGQUIT: the same, exit 131" in line
        with socket.create_connection(address_of(line), timeout=TIMEOUT) as c:
            c.sendall(b"hi\n")
            assert c.recv(10) == b"hi\n"
            began = time.monotonic()
            proc.send_signal(sig)
            assert proc.wait(TIMEOUT) == status
            assert time.monotonic() - began < 3.0, "waited for the open connection"
            try:
                assert c.recv(10) == b""
            except ConnectionResetError:
                pass
        err = proc.stderr.read().decode()
    name = signal.Signals(sig).name
    assert "%s: stopping at once; 1 connection(s) cut" % name in err, err


def test_sigint_cuts_a_sigterm_drain_short():
    with echo_service("--port", "0", "--drain-timeout", "30") as (proc, line):
        with socket.create_connection(address_of(line), timeout=TIMEOUT) as c:
            c.sendall(b"hi\n")
            assert c.recv(10) == b"hi\n"
            proc.send_signal(signal.SIGTERM)
            read_log_line(proc, "draining")
            began = time.monotonic()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(TIMEOUT) == 130
            assert time.monotonic() - began < 3.0


def test_udp_stop_line_counts_no_connections():
    with echo_service("--port", "0", "--udp") as (proc, line):
        assert "SIGTERM: stop, exit 0" in line
        status, err = stop(proc)
    assert status == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM: stopped in" in lines[0], err
    assert "connection" not in err, err


def test_sigterm_with_nothing_open_logs_one_line():
    with echo_service("--port", "0") as (proc, line):
        status, err = stop(proc)
    assert status == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "0 cut" in lines[0], err


def test_guard_flags_reach_the_server():
    with echo_service("--port", "0", "--max-connections-per-client", "1") as (proc, line):
        address = address_of(line)
        with socket.create_connection(address, timeout=TIMEOUT) as first:
            first.sendall(b"a\n")
            assert first.recv(10) == b"a\n"
            with socket.create_connection(address, timeout=TIMEOUT) as second:
                try:
                    assert second.recv(10) == b""
                except ConnectionResetError:
                    pass
        assert stop(proc)[0] == 0


def test_metrics_endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with echo_service("--port", "0", "--metrics", "127.0.0.1:%d" % port) as (proc, line):
        assert request_reply(address_of(line), b"m\n") == b"m\n"
        metrics_line = read_line(proc, time.monotonic() + TIMEOUT)
        assert "metrics on http://127.0.0.1:%d/metrics" % port in metrics_line
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = request_reply(("127.0.0.1", port), b"GET /metrics HTTP/1.0\r\n\r\n")
            if b"cysocketserver_received_bytes_total" in reply and b'"echo"} 2' in reply:
                break
            assert time.monotonic() < deadline, reply
            time.sleep(0.05)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200")
        assert b"text/plain; version=0.0.4" in head
        assert b'cysocketserver_connections_total{server="echo"} 1' in body
        assert b"# TYPE cysocketserver_connections_active gauge" in body
        assert request_reply(("127.0.0.1", port), b"GET / HTTP/1.0\r\n\r\n").startswith(
            b"HTTP/1.0 404")
        assert stop(proc)[0] == 0


def test_the_command_never_changes_the_package_classes():
    import cysocketserver
    from cysocketserver.cli.echo import build_servers
    from cysocketserver.cli.main import build_parser

    before = {name: dict(vars(getattr(cysocketserver, name)))
              for name in ("TCPServer", "ThreadingTCPServer", "ThreadPoolTCPServer", "UDPServer")}
    args = build_parser().parse_args(["echo", "--port", "0", "--max-connections", "5"])
    servers = build_servers(args)
    try:
        assert servers[0][0].allow_reuse_address and servers[0][0].daemon_threads
    finally:
        for server, _transport in servers:
            server.server_close()
    after = {name: dict(vars(getattr(cysocketserver, name))) for name in before}
    assert before == after
    assert cysocketserver.ThreadingTCPServer.daemon_threads is False
    assert cysocketserver.TCPServer.allow_reuse_address is False


def test_workers_serve_reload_on_sighup_and_report_per_worker_metrics():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with echo_service("--port", "0", "--workers", "2", "--metrics",
                      "127.0.0.1:%d" % port) as (proc, line):
        assert "2 workers (shared)" in line
        address = address_of(line)
        read_line(proc, time.monotonic() + TIMEOUT)  # the metrics line

        def metrics():
            return request_reply(("127.0.0.1", port), b"GET /metrics HTTP/1.0\r\n\r\n")

        deadline = time.monotonic() + TIMEOUT
        while b'cysocketserver_workers_serving{server="echo"} 2' not in metrics():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for count in range(4):
            assert request_reply(address, b"w%d\n" % count) == b"w%d\n" % count
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while b'cysocketserver_worker_restarts_total{server="echo"} 2' not in metrics():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert request_reply(address, b"after\n") == b"after\n"
        body = metrics()
        assert b'cysocketserver_connections_total{server="echo"} 5' in body
        assert b'cysocketserver_worker_requests_total{server="echo",worker="0"}' in body
        assert b'cysocketserver_worker_heartbeat_age_seconds{server="echo",worker="1"}' in body
        status, err = stop(proc)
    assert status == 0, err
    assert "SIGTERM: stopped in" in err
    assert "5 connection(s) served by 2 worker(s), 2 restart(s)" in err


def test_workers_on_a_unix_socket_refuse_reuseport_in_one_line_and_leave_no_file(short_tmp):
    path = os.path.join(short_tmp, "echo.sock")
    proc = run_cli("echo", "--unix", path, "--workers", "2", "--balancing", "reuseport")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "balancing='reuseport' needs a TCP or UDP socket" in lines[0]
    assert proc.stdout == ""
    assert not os.path.exists(path)


def test_metrics_on_an_empty_host_listens_on_every_interface():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with echo_service("--port", "0", "--metrics", ":%d" % port) as (proc, line):
        metrics_line = read_line(proc, time.monotonic() + TIMEOUT)
        assert "metrics on http://0.0.0.0:%d/metrics" % port in metrics_line
        reply = request_reply(("127.0.0.1", port), b"GET /metrics HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.0 200")
        assert b'cysocketserver_connections_total{server="echo"}' in reply
        assert stop(proc)[0] == 0


def test_help_names_every_signal_and_the_metrics_shorthand():
    text = " ".join(run_cli("echo", "--help").stdout.split())
    for words in ("SIGTERM stops accepting", "exits 130", "exit 131", ":PORT listens on every "
                  "interface (0.0.0.0)", "SIGHUP replaces every worker"):
        assert words in text, words


def test_an_empty_host_listens_on_every_interface():
    with echo_service("--host", "", "--port", "0") as (proc, line):
        host, port = address_of(line)
        assert host == "0.0.0.0"
        assert request_reply(("127.0.0.1", port), b"any\n") == b"any\n"
        assert stop(proc)[0] == 0
