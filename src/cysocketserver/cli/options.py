"""The command line's option values (ports, addresses, whole numbers, seconds) and its errors:
every mistake is one line on stderr and exit status 2."""
import argparse
import math

PROG = "python -m cysocketserver"
EXIT_USAGE = 2
# The host an empty HOST stands for, as Prometheus exporters read ":9102".
ALL_INTERFACES = "0.0.0.0"


class UsageError(Exception):
    """A mistake on the command line or in its environment: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (and exit status 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def port(text):
    """A TCP or UDP port, 0 to 65535 (0: the system picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "port must be a number from 0 to 65535, not %r" % text) from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("port must be a number from 0 to 65535, not %d" % value)
    return value


def whole(minimum):
    """A whole number at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a whole number, not %r" % text) from None
        if value < minimum:
            raise argparse.ArgumentTypeError("must be at least %d, not %d" % (minimum, value))
        return value
    return parse


positive = whole(1)
non_negative = whole(0)


def seconds(zero_ok):
    """A finite number of seconds, above 0 (or 0 too, with ``zero_ok``)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected seconds, not %r" % text) from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError("must be a number of seconds %s 0, not %r"
                                             % (">=" if zero_ok else ">", text))
        return value
    return parse


def host(text):
    """A host to listen on: a name or an address, IPv6 in brackets or not; empty: all
    interfaces (IPv4)."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text or ALL_INTERFACES


def host_port(text):
    """HOST:PORT, [IPv6]:PORT, or :PORT for all interfaces."""
    where, sep, number = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected HOST:PORT or :PORT, not %r" % text)
    return host(where), port(number)
