"""Serves while the process is out of file descriptors, then frees them.

Usage: python support_emfile.py {socketserver|cysocketserver} {sync|threading}[-hook]

With ``-hook`` the server overrides get_request() to count the accept attempts,
a measure of spinning that does not depend on how loaded the machine is.

Runs in its own process because it lowers RLIMIT_NOFILE and then exhausts it.
Prints one JSON line: {"cpu": <share of one core used while accept() fails>,
"served": <clients answered after the descriptors were freed>, ...}.
"""
import errno
import importlib
import json
import os
import resource
import socket
import sys
import threading
import time

CLIENTS = 3
MEASURE_SECONDS = 1.0


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv):
    target, kind = argv[1], argv[2]
    mod = importlib.import_module(target)

    class Handler(mod.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"pong:" + self.rfile.readline())

    base, _, hook = kind.partition("-")
    server_cls = mod.TCPServer if base == "sync" else mod.ThreadingTCPServer
    attempts = [0]
    if hook:
        class Counting(server_cls):
            def get_request(self):
                attempts[0] += 1
                return super().get_request()

        server_cls = Counting
    server = server_cls(("127.0.0.1", 0), Handler)
    errors = []

    def serve():
        try:
            server.serve_forever(poll_interval=0.5)
        except BaseException as exc:  # reported, not hidden
            errors.append(repr(exc))

    loop = threading.Thread(target=serve, daemon=True)
    loop.start()
    time.sleep(0.2)  # the loop is up and has whatever descriptors it needs

    clients = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(CLIENTS)]
    for c in clients:
        c.settimeout(10)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
    fillers = []
    try:
        while True:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise

    # connect() needs no new descriptor; the server's accept() will fail.
    for c in clients:
        c.connect(server.server_address)
        c.sendall(b"ping\n")
    time.sleep(0.2)

    wall0, cpu0, attempts0 = time.monotonic(), cpu_seconds(), attempts[0]
    time.sleep(MEASURE_SECONDS)
    wall1, cpu1, attempts1 = time.monotonic(), cpu_seconds(), attempts[0]
    alive_during = loop.is_alive()

    for fd in fillers:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    served = 0
    replies = []
    for c in clients:
        try:
            buf = b""
            while not buf.endswith(b"\n"):
                data = c.recv(100)
                if not data:
                    break
                buf += data
            replies.append(buf.decode("latin-1"))
            if buf == b"pong:ping\n":
                served += 1
        except OSError as exc:
            replies.append(repr(exc))
        finally:
            c.close()

    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    stopper.join(10)
    stopped = not stopper.is_alive()
    if stopped:
        server.server_close()

    print(
        json.dumps(
            {
                "cpu": (cpu1 - cpu0) / (wall1 - wall0),
                "accept_attempts_per_second": (attempts1 - attempts0) / (wall1 - wall0)
                if hook
                else None,
                "served": served,
                "clients": CLIENTS,
                "replies": replies,
                "fillers": len(fillers),
                "loop_alive_during_emfile": alive_during,
                "stopped": stopped,
                "errors": errors,
                "implementation": getattr(mod, "IMPLEMENTATION", "stdlib"),
            }
        )
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
