"""Child processes for tests/test_greenlet.py.

    python support_greenlet.py scale N        driver: N idle connections to a greenlet server
    python support_greenlet.py scale-server   the server the driver starts
    python support_greenlet.py http           http.server on a GreenletMixIn server after install()

Each prints one result line (``SCALE {...}`` / ``HTTP-OK ...``) and exits 0, or fails loudly.
Every wait is bounded.
"""
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time

from support_net import rss_bytes  # this file runs from tests/, next to it

HOST = "127.0.0.1"
TIMEOUT = 20.0



def drop_thread_hub():
    """Let go of this thread's hub (closing its descriptors), so that the next test makes a
    fresh one, on its own engine."""
    from cysocketserver import greenlets

    greenlets._tls.__dict__.pop("hub", None)
    greenlets._tls.__dict__.pop("owner", None)

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def scale_server():
    import gc

    import cysocketserver
    from cysocketserver.models.greenlet import greenlet_state

    raise_nofile()
    idents = set()

    class Handler(cysocketserver.StreamRequestHandler):
        def handle(self):
            idents.add(threading.get_ident())
            for line in self.rfile:
                if line == b"STATS\n":
                    gc.collect()
                    stats = {
                        "handlers": len(greenlet_state(server).handlers),
                        "threads": threading.active_count(),
                        "idents": len(idents),
                        "rss": rss_bytes(),
                        "engine": cysocketserver.IMPLEMENTATION,
                    }
                    self.wfile.write(json.dumps(stats).encode() + b"\n")
                elif line == b"STOP\n":
                    server.shutdown()  # from a handler: the loop stops after this one
                    return
                else:
                    self.wfile.write(line)

    class Server(cysocketserver.GreenletTCPServer):
        request_queue_size = 4096
        block_on_close = False

    server = Server((HOST, 0), Handler)
    gc.collect()
    print("PORT", server.server_address[1], "RSS", rss_bytes(), flush=True)
    server.serve_forever(poll_interval=None)
    server.server_close()


def scale_driver(wanted):
    limit = raise_nofile()
    # Both processes need a descriptor per connection, plus a margin.
    count = max(1, min(wanted, limit - 100))
    start = time.monotonic()
    here = os.path.abspath(__file__)
    proc = subprocess.Popen([sys.executable, here, "scale-server"], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    clients = []
    try:
        words = proc.stdout.readline().split()
        port, rss_before = int(words[1]), int(words[3])
        address = (HOST, port)
        for _ in range(count):
            c = socket.create_connection(address, timeout=TIMEOUT)
            clients.append(c)
        for i, c in enumerate(clients):
            c.sendall(b"ping %d\n" % i)
        for i, c in enumerate(clients):
            expected = b"ping %d\n" % i
            got = b""
            while len(got) < len(expected):
                chunk = c.recv(64)
                if not chunk:
                    break
                got += chunk
            if got != expected:
                raise SystemExit(f"connection {i}: {got!r}")
        served = time.monotonic()
        with socket.create_connection(address, timeout=TIMEOUT) as control:
            control.sendall(b"STATS\n")
            stats = json.loads(control.makefile("rb").readline())
            control.sendall(b"STOP\n")
        stats.update(connections=count, wanted=wanted, nofile=limit,
                     per_connection=(stats["rss"] - rss_before) / count,
                     seconds_to_serve_all=served - start)
        print("SCALE", json.dumps(stats), flush=True)
    finally:
        for c in clients:
            c.close()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise SystemExit("the server did not stop")
    if proc.returncode != 0:
        raise SystemExit(f"the server exited with {proc.returncode}")


def http():
    import tempfile
    import urllib.request

    import cysocketserver

    cysocketserver.install()
    import http.server
    import functools

    assert http.server.HTTPServer.__mro__[1] is cysocketserver.TCPServer

    class Server(cysocketserver.GreenletMixIn, http.server.HTTPServer):
        pass

    idents = set()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def handle(self):
            idents.add(threading.get_ident())
            super().handle()

        def log_message(self, *args):
            pass

    root = tempfile.mkdtemp()
    body = os.urandom(300_000)
    with open(os.path.join(root, "blob.bin"), "wb") as f:
        f.write(body)
    server = Server((HOST, 0), functools.partial(Handler, directory=root))
    serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serve.start()
    url = "http://%s:%d/blob.bin" % server.server_address[:2]
    results = []

    def fetch():
        for _ in range(5):
            with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
                results.append(r.read() == body and r.status == 200)

    clients = [threading.Thread(target=fetch) for _ in range(16)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(60)
    try:
        urllib.request.urlopen(url + ".missing", timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        missing = exc.code
    server.shutdown()
    serve.join(TIMEOUT)
    server.server_close()
    shutil.rmtree(root, ignore_errors=True)
    assert not serve.is_alive(), "serve_forever did not return"
    assert len(results) == 80 and all(results), results
    assert missing == 404
    assert idents == {serve.ident}, (idents, serve.ident)
    print("HTTP-OK engine=%s requests=%d" % (cysocketserver.IMPLEMENTATION, len(results) + 1))


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "scale":
        scale_driver(int(sys.argv[2]))
    elif role == "scale-server":
        scale_server()
    elif role == "http":
        http()
    else:
        raise SystemExit(f"unknown role {role}")
