"""The benchmark's proxy rows, every relay beside the others:

    python -m cysocketserver.bench.proxy [--rounds 5] [--duration 2] [bench options]

runs the four proxy rows (``python -m cysocketserver bench --list`` names them) with every
relay of relays.py -- HAProxy with its default threads and with one, the proxy command in one
process and with ``--workers 2`` -- beside the two that every proxy row has: ``cy``, a
GreenletTCPServer whose handler calls ``connect()`` and ``relay()``, and ``stdlib``, a
ThreadingTCPServer with a thread and select() per connection (both in server.py).  Each relay
runs in a process of its own in front of the same C echo server; the rounds, medians and
ratios are the benchmark's (harness.py), 5 rounds unless told.
"""
import sys

from . import harness
from .relays import PROXIES
from .workloads import PROXY

__all__ = ["main"]


def main(argv=None):
    parser = harness.build_parser()
    parser.prog = "python -m cysocketserver.bench.proxy"
    parser.set_defaults(proxies=",".join(PROXIES))
    opts = parser.parse_args(argv)
    opts.workload = opts.workload or list(PROXY)
    if opts.rounds is None and not opts.quick:
        opts.rounds = 5
    opts = harness.finish_options(opts, parser)
    return harness.run(opts)


if __name__ == "__main__":
    sys.exit(main())
