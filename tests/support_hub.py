"""Child processes for tests/test_hub_fairness.py and tests/test_hub_fork.py.

    python support_hub.py echo-server             a GreenletTCPServer line echo; prints PORT n,
                                                  serves until its stdin closes
    python support_hub.py pipeline PORT SECONDS   one client that pipelines lines while it reads
                                                  the echoes, for SECONDS; prints STARTED, then
                                                  PIPELINE {"lines": ...}
    python support_hub.py fork-hub                uses the hub, forks; parent and child both go
                                                  on using sleep()/connect(); prints FORK {...}
    python support_hub.py forking-server KIND     a forking server (KIND: "threaded" is
                                                  ForkingTCPServer after the parent used the hub,
                                                  "greenlet" is (ForkingMixIn, GreenletTCPServer))
                                                  whose handlers use sleep()/connect(), under 20
                                                  concurrent clients; prints FORKING {...}
    python support_hub.py fork-in-greenlet        a greenlet forks and returns in the child;
                                                  prints GREENLET-FORK {...}

The engine is the one CYSOCKETSERVER_NO_EXTENSIONS selects.  Every wait is bounded.
"""
import json
import os
import socket
import sys
import threading
import time
import traceback

HOST = "127.0.0.1"
TIMEOUT = 20.0


def echo_server():
    import cysocketserver

    class LineEcho(cysocketserver.StreamRequestHandler):
        def handle(self):
            try:
                for line in self.rfile:
                    self.wfile.write(line)
            except ConnectionError:
                pass  # the pipelining client leaves without reading the rest

    class Server(cysocketserver.GreenletTCPServer):
        request_queue_size = 128
        block_on_close = False

    server = Server((HOST, 0), LineEcho)

    def stop_when_stdin_closes():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print("PORT", server.server_address[1], cysocketserver.IMPLEMENTATION, flush=True)
    server.serve_forever(poll_interval=None)
    server.server_close()


def pipeline(port, seconds):
    """Keep the server's side of one connection always ready to read and to write."""
    line = b"0123456789abcdef\n"
    chunk = line * 4096
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    received = [0]

    def reader():
        announced = False
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            received[0] += len(data)
            if not announced:
                announced = True
                print("STARTED", flush=True)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sock.sendall(chunk)
    finally:
        # No drain: what the server still has queued is not this client's business any more.
        sock.shutdown(socket.SHUT_RDWR)
        t.join(TIMEOUT)
        sock.close()
    print("PIPELINE", json.dumps({"lines": received[0] // len(line)}), flush=True)


def _upstream():
    """A threaded line echo the greenlet code under test talks to through connect()."""
    import cysocketserver

    class LineEcho(cysocketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    class Upstream(cysocketserver.ThreadingTCPServer):
        daemon_threads = True
        request_queue_size = 128

    server = Upstream((HOST, 0), LineEcho)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return server


def _talk(address, text, timeout=5.0):
    """One round trip through a cooperative connection, with a cooperative sleep before it."""
    import cysocketserver

    cysocketserver.sleep(0.001)
    with cysocketserver.connect(address, timeout=timeout) as conn:
        conn.sendall(text + b"\n")
        reply = conn.makefile("rb").readline()
    if reply != text + b"\n":
        raise AssertionError((text, reply))


def _busy_greenlets(address, who, count=8, rounds=15):
    """count greenlets, each doing rounds round trips; returns the errors."""
    from cysocketserver import greenlets

    errors, done = [], []

    def worker(i):
        try:
            for r in range(rounds):
                _talk(address, b"%s %d.%d" % (who, i, r))
        except BaseException as exc:
            errors.append(f"{who.decode()} greenlet {i}: {exc!r}")
        finally:
            done.append(i)

    for i in range(count):
        greenlets.spawn(worker, i)
    deadline = time.monotonic() + TIMEOUT
    while len(done) < count and time.monotonic() < deadline:
        greenlets.sleep(0.005)
    if len(done) < count:
        errors.append(f"{who.decode()}: {count - len(done)} greenlets still running")
    return errors


def fork_hub():
    from cysocketserver import greenlets

    upstream = _upstream()
    address = upstream.server_address
    hub = greenlets.get_hub()
    greenlets.sleep(0.01)
    kept = greenlets.connect(address, timeout=5.0)  # made before the fork, used on both sides
    kept_lines = kept.makefile("rb")
    kept.sendall(b"before\n")
    assert kept_lines.readline() == b"before\n"
    report_r, report_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(report_r)
            result = {"fresh_hub": greenlets.get_hub() is not hub}
            errors = _busy_greenlets(address, b"child")
            kept.sendall(b"child\n")
            if kept_lines.readline() != b"child\n":
                errors.append("the connection made before the fork failed in the child")
            kept.close()
            result["errors"] = errors
            os.write(report_w, json.dumps(result).encode())
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(report_w)
    errors = _busy_greenlets(address, b"parent")
    # Wait for the child without holding the hub.
    deadline = time.monotonic() + TIMEOUT
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        greenlets.sleep(0.01)
    else:
        os.kill(pid, 9)
        errors.append("the child did not finish")
    child = json.loads(os.read(report_r, 65536) or b"{}")
    # The parent's hub and its connection still work after the child has gone.
    errors += _busy_greenlets(address, b"after", count=4, rounds=5)
    kept.sendall(b"after\n")
    if kept_lines.readline() != b"after\n":
        errors.append("the connection made before the fork failed in the parent afterwards")
    print("FORK", json.dumps({
        "parent_hub_kept": greenlets.get_hub() is hub, "child": child,
        "child_status": status, "errors": errors, "seconds": time.monotonic() - start,
    }), flush=True)


def fork_in_greenlet():
    """A greenlet forks and, in the child, simply returns: the child must end there, as a
    thread that forked would, and never run the parent's other greenlets."""
    from cysocketserver import greenlets

    read_fd, write_fd = os.pipe()
    children = []

    def other():
        greenlets.sleep(0.1)
        os.write(write_fd, b"other greenlet ran in %d\n" % os.getpid())

    def forker():
        pid = os.fork()
        if pid == 0:
            os.write(write_fd, b"forker returned in the child\n")
            return  # back to the hub, which this process must not run
        children.append(pid)

    sys.stdout.flush()
    greenlets.get_hub()  # spawn() runs tasks on this thread's hub
    greenlets.spawn(other)
    greenlets.spawn(forker)
    greenlets.sleep(0.3)
    _, status = os.waitpid(children[0], 0)
    os.close(write_fd)
    lines = []
    with os.fdopen(read_fd, "rb") as f:
        lines = sorted(f.read().decode().splitlines())
    print("GREENLET-FORK", json.dumps({
        "lines": lines, "parent": os.getpid(), "child_exit": os.waitstatus_to_exitcode(status),
    }), flush=True)


def forking_server(kind):
    import cysocketserver
    from cysocketserver import greenlets

    upstream = _upstream()
    address = upstream.server_address
    greenlets.sleep(0.01)  # the serving thread has a hub before it forks
    _talk(address, b"parent")

    class Handler(cysocketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline().rstrip(b"\n")
            _talk(address, line)  # sleep() and connect() on the child's own hub
            self.wfile.write(b"%d %s\n" % (os.getpid(), line))

    if kind == "threaded":
        base = cysocketserver.ForkingTCPServer
    else:
        base = type("ForkingGreenletTCPServer",
                    (cysocketserver.ForkingMixIn, cysocketserver.GreenletTCPServer), {})

    class Server(base):
        request_queue_size = 128

    server = Server((HOST, 0), Handler)
    replies, errors, latencies = [], [], []

    def client(i):
        start = time.monotonic()
        try:
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as c:
                c.sendall(b"client %d\n" % i)
                reply = c.makefile("rb").readline()
            pid, _, text = reply.rstrip(b"\n").partition(b" ")
            if text != b"client %d" % i:
                errors.append(f"client {i}: {reply!r}")
            replies.append(int(pid))
        except Exception as exc:
            errors.append(f"client {i}: {exc!r}")
        latencies.append(time.monotonic() - start)

    def drive():
        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT + 5)
        server.shutdown()

    driver = threading.Thread(target=drive)
    driver.start()
    server.serve_forever(poll_interval=0.05)
    driver.join(TIMEOUT)
    server.server_close()
    _talk(address, b"parent after")  # the parent's own hub still works
    print("FORKING", json.dumps({
        "served": len(replies), "errors": errors, "forked": os.getpid() not in replies,
        "processes": len(set(replies)), "max_seconds": max(latencies, default=None),
    }), flush=True)


if __name__ == "__main__":
    import warnings

    # The fork scenarios fork while helper threads run on purpose (Python 3.12+ warns).
    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
    role = sys.argv[1]
    if role == "echo-server":
        echo_server()
    elif role == "pipeline":
        pipeline(int(sys.argv[2]), float(sys.argv[3]))
    elif role == "fork-hub":
        fork_hub()
    elif role == "forking-server":
        forking_server(sys.argv[2])
    elif role == "fork-in-greenlet":
        fork_in_greenlet()
    else:
        raise SystemExit(f"unknown role {role}")
