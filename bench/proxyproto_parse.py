"""How long one PROXY protocol header takes to parse, on the compiled parser and the pure one.

    python bench/proxyproto_parse.py [--repeat 25] [--number 5000] [--also PATH ...]

Times ``parse(header, ANY)`` with timeit on typical headers (v1 TCP4 and TCP6, v2 IPv4 and
IPv6, v2 with TLVs, v2 with TLVs and a CRC32c) and prints, for each header and parser, the best
of ``--repeat`` runs in microseconds per call, and the pure parser's time over the compiled
one's.  The parsers take turns run by run, so that a busy spell slows all of them alike.  ``--also PATH`` times one more build of the compiled parser, from its extension file
(an older build kept aside, say), in the same run.  The best run is the one least disturbed by the rest of the machine; on a loaded
machine compare ratios between runs made together, not absolute times.
"""
import argparse
import importlib.machinery
import importlib.util
import os
import socket
import struct
import timeit

from cysocketserver import _engine
from cysocketserver._proxycommon import ANY, V2_SIGNATURE

PP2_TYPE_CRC32C = 0x03


def _v2(family, addresses, tlvs=(), crc=False):
    body = addresses + b"".join(bytes([kind]) + struct.pack(">H", len(value)) + value
                                for kind, value in tlvs)
    if crc:
        body += bytes([PP2_TYPE_CRC32C]) + struct.pack(">H", 4) + b"\0\0\0\0"
    header = V2_SIGNATURE + bytes([0x21, family << 4 | 1]) + struct.pack(">H", len(body)) + body
    if crc:
        checksum = _engine.load("python").proxyproto.crc32c(header)
        header = header[:-4] + struct.pack(">I", checksum)
    return header


def _addresses(family, source, destination, source_port, destination_port):
    return (socket.inet_pton(family, source) + socket.inet_pton(family, destination)
            + struct.pack(">HH", source_port, destination_port))


TLVS = [(0x01, b"h2"), (0x02, b"www.example.com"), (0x05, b"4f1c9a77-request-id")]
INET4 = _addresses(socket.AF_INET, "203.0.113.9", "10.0.0.1", 56324, 443)
INET6 = _addresses(socket.AF_INET6, "2001:db8::7", "2001:db8::1", 56324, 443)

HEADERS = {
    "v1 TCP4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    "v1 TCP6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
    "v2 IPv4": _v2(1, INET4),
    "v2 IPv6": _v2(2, INET6),
    "v2 IPv4 + 3 TLVs": _v2(1, INET4, TLVS),
    "v2 IPv4 + 3 TLVs + CRC32c": _v2(1, INET4, TLVS, crc=True),
}


def best_microseconds(parsers, header, repeat, number):
    """{name: the best of ``repeat`` runs of ``number`` parses, in microseconds per parse}."""
    timers = {name: timeit.Timer(lambda parse=module.parse: parse(header, ANY))
              for name, module in parsers.items()}
    best = dict.fromkeys(parsers, float("inf"))
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(number) / number * 1e6)
    return best


def load_extension(path):
    """The compiled parser in the extension file ``path``, imported under a name of its own."""
    name = os.path.basename(path).split(".")[0]                 # its init function's name
    loader = importlib.machinery.ExtensionFileLoader("proxyproto_baseline%d.%s" % (id(path), name),
                                                     path)
    spec = importlib.util.spec_from_file_location(loader.name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=25, help="runs per measurement (best kept)")
    parser.add_argument("--number", type=int, default=5000, help="parse calls per run")
    parser.add_argument("--also", action="append", default=[], metavar="PATH",
                        help="an extension file of the compiled parser to time too")
    options = parser.parse_args(argv)

    engines = [name for name in ("compiled", "python") if _engine.available(name)]
    parsers = {name: _engine.load(name).proxyproto for name in engines}
    for number, path in enumerate(options.also, 1):
        parsers["also-%d" % number] = load_extension(path)
    engines = list(parsers)
    for name, module in parsers.items():
        print("%s parser: %s" % (name, getattr(module, "__file__", module.__name__)))
    print()
    ratio = "compiled" in parsers and "python" in parsers
    print("%-28s" % "header (us per parse)" + "".join("%11s" % name for name in engines)
          + ("   python/compiled" if ratio else ""))
    for label, header in HEADERS.items():
        times = best_microseconds(parsers, header, options.repeat, options.number)
        row = "%-28s" % label + "".join("%11.3f" % times[name] for name in engines)
        if ratio:
            row += "%17.1fx" % (times["python"] / times["compiled"])
        print(row)


if __name__ == "__main__":
    main()
