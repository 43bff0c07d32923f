"""A prefork server for the tests, run as its own process (the supervisor takes signals only in
a main thread): ``python support_prefork.py --workers 2 --model sync ...``.

It prints one JSON line once serving: the port, the parent's pid and the port of a small
endpoint in the parent that answers each connection with ``stats()`` as JSON.  The handler
answers lines: ``pid`` (the worker's pid), ``sleep SECONDS`` (then the pid), ``hang`` (never
returns, without letting the serve loop run), ``exit`` (the worker dies with status 3), and
anything else is echoed.
"""
import argparse
import json
import os
import sys
import threading
import time

import cysocketserver
from cysocketserver.prefork import PreforkMixIn

BASES = {
    "sync": cysocketserver.TCPServer,
    "threading": cysocketserver.ThreadingTCPServer,
    "pool": cysocketserver.ThreadPoolTCPServer,
    "udp": cysocketserver.UDPServer,
}


class Handler(cysocketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            words = line.split()
            command = words[0] if words else b""
            if command == b"pid":
                self.wfile.write(b"%d\n" % os.getpid())
            elif command == b"sleep":
                self.server.nap(float(words[1]))
                self.wfile.write(b"%d\n" % os.getpid())
            elif command == b"hang":
                while True:
                    time.sleep(1)
            elif command == b"exit":
                os._exit(3)
            else:
                self.wfile.write(line)


class DatagramHandler(cysocketserver.DatagramRequestHandler):
    def handle(self):
        self.wfile.write(b"%d\n" % os.getpid())


class StatsHandler(cysocketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(json.dumps(self.server.served.stats()).encode())


def build(args):
    if args.model == "greenlet":
        base = cysocketserver.GreenletTCPServer
    else:
        base = BASES[args.model]
    attrs = {
        "workers": args.workers,
        "balancing": args.balancing,
        "worker_timeout": args.worker_timeout,
        "max_requests": args.max_requests,
        "max_requests_jitter": args.jitter,
        "allow_reuse_address": True,
        "daemon_threads": True,
        "request_queue_size": 128,
    }
    if args.model != "udp":
        attrs["drain_timeout"] = args.drain_timeout

    def nap(self, seconds):
        if args.model == "greenlet":
            cysocketserver.sleep(seconds)
        else:
            time.sleep(seconds)

    def worker_started(self):
        if args.crash_starts:
            path, limit = args.crash_starts.rsplit(":", 1)
            with open(path, "a+") as log:
                log.seek(0)
                attempts = len(log.read().splitlines())
                log.write("%r\n" % time.monotonic())
            if attempts < int(limit):
                raise RuntimeError("failing start %d on purpose" % (attempts + 1))

    attrs["nap"] = nap
    attrs["worker_started"] = worker_started
    cls = type("TestPrefork", (PreforkMixIn, base), attrs)
    handler = DatagramHandler if args.model == "udp" else Handler
    return cls(("127.0.0.1", args.port), handler)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--balancing", default="shared")
    parser.add_argument("--model", default="sync")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--worker-timeout", type=float, default=30.0)
    parser.add_argument("--max-requests", type=int)
    parser.add_argument("--jitter", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, default=5.0)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--crash-starts", metavar="FILE:N")
    parser.add_argument("--fail-upgrade", action="store_true",
                        help="a copy started by an upgrade (SIGUSR2) exits at once")
    args = parser.parse_args()
    if args.fail_upgrade and "CYSOCKETSERVER_UPGRADE_FD" in os.environ:
        sys.exit("started by an upgrade: failing on purpose")
    server = build(args)
    stats = cysocketserver.ThreadingTCPServer(("127.0.0.1", 0), StatsHandler)
    stats.daemon_threads = True
    stats.served = server
    threading.Thread(target=stats.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "pid": os.getpid(),
                      "stats_port": stats.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=args.poll_interval)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        server.server_close()
        sys.exit(130)
    server.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
