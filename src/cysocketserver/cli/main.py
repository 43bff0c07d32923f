"""The command line's parser and its dispatch to the subcommands."""
import argparse
import sys

import cysocketserver
from cysocketserver.cli import echo, proxy
from cysocketserver.cli.options import EXIT_USAGE, PROG, Parser

EXAMPLE = """\
start here:
  %s echo --port 9999
  then talk to it: nc 127.0.0.1 9999""" % PROG


def _add_version(parser):
    parser.add_argument("--version", action="version",
                        version="cysocketserver %s (%s engine)" % (cysocketserver.__version__,
                                                                   cysocketserver.IMPLEMENTATION))


def build_parser():
    parser = Parser(prog=PROG, description="cysocketserver's command line.", epilog=EXAMPLE,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=Parser)
    _add_version(echo.add_command(commands))
    _add_version(proxy.add_command(commands))
    # Listed for --help; its options are the bench subpackage's own, read by it alone.
    commands.add_parser("bench", help="compare with the stdlib's socketserver "
                        "(%s bench --help)" % PROG, add_help=False)
    return parser


def _bench_version(argv):
    """``bench --version``: answered here, so that every subcommand has it."""
    parser = Parser(prog=PROG + " bench", add_help=False)
    _add_version(parser)
    parser.parse_known_args(argv)


def main(argv=None):
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        _bench_version(argv[1:])
        # Only the bench command imports the benchmark (and its load client).
        from cysocketserver.bench import main as run_bench

        return run_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return args.run(args)
