"""Command line: ``python -m cysocketserver echo --port 9999``, ``python -m cysocketserver bench``."""
import argparse
import sys

import cysocketserver


class LineEcho(cysocketserver.StreamRequestHandler):
    """Sends every line back as it arrives."""

    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class DatagramEcho(cysocketserver.DatagramRequestHandler):
    """Sends every packet back to its sender."""

    def handle(self):
        self.wfile.write(self.rfile.read())


def run_echo(args):
    if args.udp:
        server_class = cysocketserver.ThreadingUDPServer if args.threads else cysocketserver.UDPServer
        handler = DatagramEcho
    else:
        server_class = cysocketserver.ThreadingTCPServer if args.threads else cysocketserver.TCPServer
        handler = LineEcho
    server_class.allow_reuse_address = True
    server_class.daemon_threads = True
    with server_class((args.host, args.port), handler) as server:
        host, port = server.server_address[:2]
        kind = "udp" if args.udp else "tcp"
        print(f"echo ({kind}, {server_class.__name__}, {cysocketserver.IMPLEMENTATION} engine) "
              f"on {host}:{port}; Ctrl-C stops", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m cysocketserver")
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echo", help="run a line echo server")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, default=9999)
    echo.add_argument("--udp", action="store_true", help="echo datagrams instead of lines")
    echo.add_argument("--no-threads", dest="threads", action="store_false",
                      help="handle one client at a time (TCPServer/UDPServer)")
    echo.set_defaults(run=run_echo)
    # Listed for --help; its options are the bench subpackage's own, read by it alone.
    commands.add_parser("bench", help="compare with the stdlib's socketserver "
                        "(python -m cysocketserver bench --help)", add_help=False)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Only the bench command imports the benchmark (and its load client).
        from cysocketserver.bench import main as run_bench

        return run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
