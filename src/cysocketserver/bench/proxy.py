"""Proxy rows: a TCP relay in front of the C reference echo server, driven by the load client.

    python -m cysocketserver.bench.proxy [--rounds 5] [--duration 2]

Relays compared, each in a process of its own in front of the same upstream (the C echo
server, started here): ``relay`` (a GreenletTCPServer whose handler calls
``cysocketserver.relay``), ``stdlib`` (a ThreadingTCPServer of the standard library, a thread
per connection copying both ways with select()) and ``haproxy`` (``mode tcp``, where
/usr/sbin/haproxy is installed).  Rounds are interleaved (every relay once per round, in turn)
and the medians reported, as the machine's load varies between rounds.

``python -m cysocketserver.bench.proxy serve KIND UPSTREAM_PORT`` runs one relay and prints
``{"port": ...}``.
"""
import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HAPROXY = "/usr/sbin/haproxy"
WORKLOADS = (
    # name, load client mode, connections, bytes per request
    ("pingpong-16x64", "pingpong", 16, 64),
    ("pingpong-100x64", "pingpong", 100, 64),
    ("connect-16", "connect", 16, 64),
    ("stream-8x64k", "stream", 8, 65536),
)


def serve_relay(upstream_port):
    import cysocketserver

    upstream = ("127.0.0.1", upstream_port)

    class Relay(cysocketserver.BaseRequestHandler):
        def handle(self):
            up = cysocketserver.connect(upstream)
            try:
                up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                cysocketserver.relay(self.request, up)
            finally:
                up.close()

    server = cysocketserver.GreenletTCPServer(("127.0.0.1", 0), Relay)
    server.request_queue_size = 1024
    return server


def serve_stdlib(upstream_port):
    import socketserver

    upstream = ("127.0.0.1", upstream_port)

    class Relay(socketserver.BaseRequestHandler):
        def handle(self):
            up = socket.create_connection(upstream)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peers = {self.request: up, up: self.request}
            open_ = [self.request, up]
            try:
                while open_:
                    readable, _, _ = select.select(open_, [], [])
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            peers[sock].shutdown(socket.SHUT_WR)
                            open_.remove(sock)
                        else:
                            peers[sock].sendall(data)
            except OSError:
                pass
            finally:
                up.close()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        request_queue_size = 1024

    return Server(("127.0.0.1", 0), Relay)


def serve(kind, upstream_port):
    if kind.startswith("relay-"):
        # relay-never, relay-always: the relay with relaying.SPLICE set so.
        from .. import relaying

        relaying.SPLICE = kind[len("relay-"):]
    server = (serve_relay if kind.startswith("relay") else serve_stdlib)(upstream_port)
    print(json.dumps({"port": server.server_address[1], "pid": os.getpid()}), flush=True)
    server.serve_forever()


def _spawn(args):
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("%s did not start" % args)
    return proc, json.loads(line)["port"]


def start_upstream():
    from . import server

    return _spawn([sys.executable, server.__file__, "--impl", "reference", "--handler", "raw"])


def start_haproxy(upstream_port, folder, threads=None):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = os.path.join(folder, "haproxy.cfg")
    with open(config, "w") as f:
        f.write("global\n    maxconn 4096\n%sdefaults\n    mode tcp\n    timeout connect 5s\n"
                "    timeout client 60s\n    timeout server 60s\n"
                "listen relay\n    bind 127.0.0.1:%d\n    server echo 127.0.0.1:%d\n"
                % ("    nbthread %d\n" % threads if threads else "", port, upstream_port))
    proc = subprocess.Popen([HAPROXY, "-f", config, "-db"], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("haproxy did not start")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--relays", default="relay,stdlib,haproxy",
                        help="of relay, relay-never, relay-always, stdlib, haproxy, haproxy1")
    parser.add_argument("--workloads", default=",".join(w[0] for w in WORKLOADS))
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        serve(argv[1], int(argv[2]))
        return
    opts = parser.parse_args(argv)
    from .. import _loadgen

    names = opts.relays.split(",")
    if not shutil.which(HAPROXY):
        names = [name for name in names if not name.startswith("haproxy")]
    procs = []
    folder = tempfile.mkdtemp()
    try:
        upstream, upstream_port = start_upstream()
        procs.append(upstream)
        ports = {}
        for name in names:
            if name.startswith("haproxy"):
                # haproxy: its default config (a thread per CPU); haproxy1: one thread.
                proc, ports[name] = start_haproxy(upstream_port, folder,
                                                  1 if name == "haproxy1" else None)
            else:
                proc, ports[name] = _spawn([sys.executable, "-m", "cysocketserver.bench.proxy",
                                            "serve", name, str(upstream_port)])
            procs.append(proc)
        wanted = opts.workloads.split(",")
        for wname, mode, conns, size in WORKLOADS:
            if wname not in wanted:
                continue
            rates = {name: [] for name in names}
            for _ in range(opts.rounds):
                for name in names:
                    result = _loadgen.run(mode, "127.0.0.1", ports[name], connections=conns,
                                          size=size, duration=opts.duration, warmup=0.3)
                    value = result["mb_per_s"] if mode == "stream" else result["rate"]
                    if result.get("error_total"):
                        value = float("nan") if not result["requests"] else value
                    rates[name].append(value)
            unit = "MB/s" if mode == "stream" else "req/s"
            med = {name: statistics.median(v) for name, v in rates.items()}
            row = "  ".join("%s %10.1f" % (name, med[name]) for name in names)
            extra = ""
            if "haproxy" in med and "relay" in med:
                extra += "  relay/haproxy %.2f" % (med["relay"] / med["haproxy"])
            if "stdlib" in med and "relay" in med:
                extra += "  relay/stdlib %.2f" % (med["relay"] / med["stdlib"])
            print("%-16s %s (%s, median of %d interleaved rounds)%s"
                  % (wname, row, unit, opts.rounds, extra), flush=True)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
