"""Instructions per request of the greenlet line echo, counted by valgrind's callgrind.

    python bench/hub_instructions.py [--requests 20000] [--connections 16] [--size 64]
    python bench/hub_instructions.py --in-process [--requests 20000] [--size 64]

Server mode: a GreenletTCPServer (``for line in rfile: wfile.write(line)``) runs under
callgrind with its instrumentation off; the compiled load client (``cysocketserver._loadgen``,
pingpong mode) warms it up, then the instrumentation is switched on (``callgrind_control -i
on``) for a fixed number of requests and off again.  The server's user-space instructions in
that window, divided by the requests, are printed.  The count depends on timing (how often a
handler finds its next line already there, how many descriptors one epoll_wait() returns), so
it varies by a few percent between runs.

In-process mode: one thread, two greenlets on the hub, a socket pair between them: the main
greenlet writes a line on one end and reads its echo, a handler-style greenlet echoes on the
other end (compiled rfile/wfile over cooperative sockets), so each request parks both
greenlets once and makes the hub wait once.  Run twice under callgrind, with N and 2N
requests: the difference divided by N is the instructions per request, exactly repeatable.

The engine is the one CYSOCKETSERVER_NO_EXTENSIONS selects; the load client is always compiled.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"


def serve():
    import cysocketserver

    class LineEcho(cysocketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    class Server(cysocketserver.GreenletTCPServer):
        request_queue_size = 128
        block_on_close = False

    import threading

    server = Server((HOST, 0), LineEcho)

    def stop_when_stdin_closes():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print("PORT", server.server_address[1], cysocketserver.IMPLEMENTATION, flush=True)
    server.serve_forever(poll_interval=None)
    server.server_close()


def _control(pid, flag):
    subprocess.run(["callgrind_control", "-i", flag, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def measure(requests, connections, size, warmup, top):
    from cysocketserver import _loadgen

    workdir = tempfile.mkdtemp(prefix="hub-callgrind-")
    out = os.path.join(workdir, "callgrind.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + out,
         sys.executable, os.path.abspath(__file__), "--serve"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        words = server.stdout.readline().split()
        port, engine = int(words[1]), words[2]
        run = dict(connections=connections, size=size, duration=3600.0, drain=30.0)
        _loadgen.run("pingpong", HOST, port, max_requests=warmup, **run)
        _control(server.pid, "on")
        time.sleep(1.0)  # the request reaches the server at its next scheduling point
        result = _loadgen.run("pingpong", HOST, port, max_requests=requests, **run)
        _control(server.pid, "off")
    finally:
        server.stdin.close()
        server.wait(300)
    total = None
    with open(out) as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
    served = result["requests"]
    print(f"engine {engine}: {served} requests at {connections} connections x {size} B: "
          f"{total / served:,.0f} instructions per request (server, user space)")
    if top:
        report = subprocess.run(["callgrind_annotate", "--inclusive=yes", out],
                                capture_output=True, text=True).stdout
        lines = [x for x in report.splitlines() if "(" in x and "%" in x]
        print("\n".join(lines[:top]))
    return total / served


def in_process_child(requests, size):
    import socket

    from cysocketserver import greenlets
    from cysocketserver._engine import SocketReader, SocketWriter

    a, b = socket.socketpair()
    a, b = greenlets.GreenSocket.from_socket(a), greenlets.GreenSocket.from_socket(b)
    reader, writer = SocketReader(a, 8192), SocketWriter(a)
    line = b"x" * (size - 1) + b"\n"

    def echo():
        rfile, wfile = SocketReader(b, 8192), SocketWriter(b)
        for got in rfile:
            wfile.write(got)

    greenlets.get_hub()  # spawn() runs tasks on this thread's hub
    greenlets.spawn(echo)
    for _ in range(requests):
        writer.write(line)
        if reader.readline() != line:
            raise SystemExit("wrong echo")


def _callgrind_total(args):
    workdir = tempfile.mkdtemp(prefix="hub-callgrind-")
    out = os.path.join(workdir, "callgrind.out")
    subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                    sys.executable, os.path.abspath(__file__), *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit("no totals in " + out)


def measure_in_process(requests, size):
    from cysocketserver import IMPLEMENTATION

    once = _callgrind_total(["--in-process-child", str(requests), "--size", str(size)])
    twice = _callgrind_total(["--in-process-child", str(2 * requests), "--size", str(size)])
    per = (twice - once) / requests
    print(f"engine {IMPLEMENTATION}, in process: {per:,.0f} instructions per request "
          f"({size} B lines, {requests} and {2 * requests} requests)")
    return per


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--top", type=int, default=0, help="show the N costliest functions")
    parser.add_argument("--in-process", action="store_true",
                        help="the in-process socket pair echo instead of a server")
    parser.add_argument("--in-process-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
    elif args.in_process_child is not None:
        in_process_child(args.in_process_child, args.size)
    elif args.in_process:
        measure_in_process(args.requests, args.size)
    else:
        measure(args.requests, args.connections, args.size, args.warmup, args.top)


if __name__ == "__main__":
    main()
