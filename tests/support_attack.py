"""The reliability scenarios: an echo server in its own process, hostile clients from 127.0.0.2,
normal clients from 127.0.0.1, every wait bounded.

The tests (test_reliability.py) run each scenario against our servers and assert the guard
holds; ``python tests/support_attack.py`` runs them against the stdlib's ThreadingTCPServer too
and prints the table of figures (the stdlib has no guards: it shows what they prevent).

Our servers are the command line itself (``python -m cysocketserver echo``), so the scenarios
also exercise it as a service; the stdlib's is the same line echo on ThreadingTCPServer.
"""
import contextlib
import errno
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support_net import subprocess_env  # noqa: E402

NORMAL = "127.0.0.1"
ATTACKER = "127.0.0.2"
MODELS = ("threading", "pool", "greenlet")
START_TIMEOUT = 20.0

STDLIB_ECHO = r"""
import socketserver, sys
class LineEcho(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = int(sys.argv[1])
server = Server(("127.0.0.1", 0), LineEcho)
print("echo (tcp, ThreadingTCPServer, stdlib) on 127.0.0.1:%d;" % server.server_address[1], flush=True)
server.serve_forever()
"""


# -- the server process -------------------------------------------------------------------------

class EchoProcess:
    """An echo server in a child process, with an optional descriptor limit."""

    def __init__(self, impl, model="threading", flags=(), nofile=None, backlog=128, env=None,
                 pass_fds=(), command=None):
        if command is None:
            if impl == "stdlib":
                command = [sys.executable, "-c", STDLIB_ECHO, str(backlog)]
            else:
                command = [sys.executable, "-m", "cysocketserver", "echo", "--port", "0",
                           "--server", model, "--backlog", str(backlog), *flags]

        def limit():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env or subprocess_env(), preexec_fn=limit,
                                     pass_fds=pass_fds)
        self.line = self._read_line(time.monotonic() + START_TIMEOUT)
        where = self.line.split(" on ", 1)[1].split(";", 1)[0]
        host, port = where.rsplit(":", 1)
        self.address = (host.strip("[]"), int(port))

    def _read_line(self, deadline):
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("the server printed nothing in time")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")
                    raise AssertionError("the server exited before it was ready: " + err)
                line += chunk
        return line.decode()

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Signal the server; returns (exit status, seconds it took, stderr)."""
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            status = None
        took = time.monotonic() - began
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return status, took, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- clients ------------------------------------------------------------------------------------

def _socket_from(source, timeout):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    return sock


def one_request(address, timeout=1.0, payload=b"hello\n"):
    """Connect from 127.0.0.1, echo one line, close; returns the seconds it took, or None when
    it failed or took longer than ``timeout``."""
    began = time.monotonic()
    try:
        with _socket_from(NORMAL, timeout) as sock:
            sock.connect(address)
            sock.sendall(payload)
            got = b""
            while not got.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                got += chunk
            if got != payload:
                return None
    except OSError:
        return None
    return time.monotonic() - began


class NormalClients:
    """``count`` threads, each echoing one line on a new connection every ``interval``."""

    def __init__(self, address, count=4, interval=0.02, timeout=1.0):
        self.address = address
        self.timeout = timeout
        self.interval = interval
        self.latencies = []
        self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self):
        while not self._stop.is_set():
            took = one_request(self.address, self.timeout)
            if took is None:
                self.failures += 1
                self.latencies.append(self.timeout)
            else:
                self.latencies.append(took)
            self._stop.wait(self.interval)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)

    def p99(self):
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None


class Slowloris:
    """``count`` connections from 127.0.0.2, each sending one byte a second and reopened (once a
    second) when the server closes it."""

    def __init__(self, address, count):
        self.address = address
        self.count = count
        self.slots = [None] * count
        self.next_at = [0.0] * count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((ATTACKER, 0))
            sock.connect_ex(self.address)
        except OSError:
            sock.close()
            return None
        self.opened += 1
        return sock

    def _run(self):
        start = time.monotonic()
        for i in range(self.count):
            self.next_at[i] = start + i / self.count   # spread over the first second
        while not self._stop.wait(0.05):
            now = time.monotonic()
            for i in range(self.count):
                if self.next_at[i] > now:
                    continue
                self.next_at[i] = now + 1.0
                sock = self.slots[i]
                if sock is not None:
                    try:
                        if sock.recv(1, socket.MSG_DONTWAIT) == b"":
                            raise ConnectionResetError
                    except BlockingIOError:
                        pass
                    except OSError:
                        sock.close()
                        sock = self.slots[i] = None
                if sock is None:
                    self.slots[i] = self._open()
                    continue
                try:
                    sock.send(b"x")
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    self.slots[i] = None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        for sock in self.slots:
            if sock is not None:
                sock.close()


def open_many(address, count, source=ATTACKER):
    """``count`` non-blocking connects (the kernel finishes the handshakes it can)."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source, 0))
        sock.connect_ex(address)
        socks.append(sock)
    return socks


@contextlib.contextmanager
def raised_nofile(need):
    """Raise this process's descriptor limit to at least ``need`` (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(max(soft, need), hard if hard != resource.RLIM_INFINITY else need)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the scenarios ------------------------------------------------------------------------------

def slowloris(impl, model, attackers=300, nofile=256, per_client=16, seconds=3.0):
    """Attackers trickle bytes while normal clients make requests; returns the figures."""
    flags = ["--max-connections-per-client", str(per_client)]
    server = EchoProcess(impl, model, flags, nofile=nofile)
    try:
        with raised_nofile(attackers + 200), Slowloris(server.address, attackers) as attack:
            time.sleep(1.2)   # every attacker has connected once
            with NormalClients(server.address) as normal:
                time.sleep(seconds)
        return {"p99_ms": round(normal.p99() * 1000, 1), "requests": len(normal.latencies),
                "failed": normal.failures, "attacker_connects": attack.opened}
    finally:
        server.stop(signal.SIGKILL)


def flood(impl, model, connections=2000, nofile=1024, limit=100, full_seconds=1.0,
          backlog=2048):
    """2000 connections against max_connections with a descriptor limit: the server's CPU while
    it is full, and how long after the flood goes away a normal client is served again.  The
    backlog is large enough for every handshake to complete at once: the server, not the
    kernel, must hold the line (the stdlib's runs out of descriptors)."""
    flags = ["--max-connections", str(limit), "--max-threads", str(limit + 28)]
    server = EchoProcess(impl, model, flags if model == "pool" else flags[:2], nofile=nofile,
                         backlog=backlog)
    try:
        with raised_nofile(connections + 200):
            socks = open_many(server.address, connections)
            try:
                time.sleep(1.0)   # accepted up to the limit; the backlog holds more
                cpu = server.cpu_seconds()
                time.sleep(full_seconds)
                cpu_share = (server.cpu_seconds() - cpu) / full_seconds
            finally:
                gone = time.monotonic()
                for sock in socks:
                    sock.close()
            recovery = None
            while time.monotonic() - gone < 10.0:
                if one_request(server.address, timeout=0.5) is not None:
                    recovery = time.monotonic() - gone
                    break
        alive = server.proc.poll() is None
        return {"cpu_percent_full": round(cpu_share * 100, 1),
                "recovery_s": None if recovery is None else round(recovery, 3), "alive": alive}
    finally:
        server.stop(signal.SIGKILL)


def sigterm_mid_conversation(model, clients=16, drain=1.0, extra_flags=(), env=None,
                             command=None, pass_fds=()):
    """16 clients echoing in a loop when SIGTERM comes: exit status, time to exit, and whether
    every byte each client got back was what it had sent."""
    flags = ["--drain-timeout", str(drain), *extra_flags]
    server = EchoProcess("cy", model, flags, env=env, command=command, pass_fds=pass_fds)
    corrupted = []
    talking = threading.Barrier(clients + 1)
    stop = threading.Event()

    def talk(index):
        sent = bytearray()
        got = bytearray()
        try:
            with _socket_from(NORMAL, 10.0) as sock:
                sock.connect(server.address)
                first = True
                while True:
                    line = b"%d:%d %s\n" % (index, len(sent), b"y" * (index * 10))
                    sock.sendall(line)
                    sent += line
                    while len(got) < len(sent):
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        got += chunk
                    if got != sent[:len(got)]:
                        corrupted.append(index)
                        return
                    if first:
                        first = False
                        talking.wait(10)
                    if stop.is_set():
                        time.sleep(0.01)
        except OSError:
            pass
        finally:
            if got != sent[:len(got)]:
                corrupted.append(index)

    threads = [threading.Thread(target=talk, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        talking.wait(10)
        time.sleep(0.2)
        status, took, err = server.stop(signal.SIGTERM, timeout=drain + 10)
    finally:
        stop.set()
        server.kill()
    for t in threads:
        t.join(10)
    summary = [line for line in err.splitlines() if "stopped in" in line]
    return {"exit_status": status, "exit_s": round(took, 3), "corrupted": len(corrupted),
            "log": summary[-1].split(": ", 1)[-1] if summary else err.strip()[-300:]}


def stdlib_sigterm(clients=16):
    """The stdlib's server (as a script that only serves) under the same SIGTERM."""
    server = EchoProcess("stdlib")
    socks = []
    try:
        for _ in range(clients):
            sock = _socket_from(NORMAL, 5.0)
            sock.connect(server.address)
            sock.sendall(b"x\n")
            sock.recv(10)
            socks.append(sock)
        status, took, _err = server.stop(signal.SIGTERM)
        return {"exit_status": status, "exit_s": round(took, 3)}
    finally:
        for sock in socks:
            sock.close()
        server.kill()


def main():
    rows = []
    for name, run in (("slowloris, 300 attackers, RLIMIT 256, per-client limit 16",
                       lambda impl, model: slowloris(impl, model)),
                      ("2000 connections, RLIMIT 1024, max_connections 100",
                       lambda impl, model: flood(impl, model))):
        row = {"case": name, "stdlib": run("stdlib", "threading")}
        for model in MODELS:
            row[model] = run("cy", model)
        rows.append(row)
        print(json.dumps(row), flush=True)
    row = {"case": "SIGTERM with 16 clients talking, drain 1 s", "stdlib": stdlib_sigterm()}
    for model in MODELS:
        row[model] = sigterm_mid_conversation(model)
    rows.append(row)
    print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
