"""The benchmark's workloads: which server and handler, and what traffic the load client sends."""
from dataclasses import asdict, dataclass

__all__ = ["Workload", "WORKLOADS", "DEFAULT", "PROXY", "HTTP_BODY", "by_name"]

# What the http.server handler answers to every GET, and the load client checks.
HTTP_BODY = "Hello world\n"


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    server: str          # class name in socketserver / cysocketserver (or http.server)
    handler: str         # "line", "raw", "datagram", "http", "http-nodelay" or "relay" (server.py)
    mode: str            # load client mode: pingpong, connect, stream, udp, http
    connections: int
    size: int            # bytes per request (stream: per line; http: of the response's body)
    # Also run the C reference echo server, so that the ratio to it (the limit) is printed.
    reference: bool = False

    @property
    def echo(self):
        """Whether the servers echo (the peers and the C reference server only echo)."""
        return self.mode != "http" and not self.proxy

    @property
    def proxy(self):
        """Whether the servers are relays in front of an echo server (the C reference)."""
        return self.handler == "relay"

    @property
    def transport(self):
        return "udp" if self.mode == "udp" else "tcp"

    @property
    def unit(self):
        """What the rate column counts."""
        return "MB/s" if self.mode == "stream" else "req/s"

    def as_dict(self):
        return asdict(self)


WORKLOADS = [
    Workload("line-1x64", "line echo, 1 connection, 64-byte lines",
             "ThreadingTCPServer", "line", "pingpong", 1, 64),
    Workload("line-16x64", "line echo, 16 connections, 64-byte lines",
             "ThreadingTCPServer", "line", "pingpong", 16, 64),
    Workload("line-100x64", "line echo, 100 connections, 64-byte lines",
             "ThreadingTCPServer", "line", "pingpong", 100, 64),
    Workload("line-16x4k", "line echo, 16 connections, 4 KiB lines",
             "ThreadingTCPServer", "line", "pingpong", 16, 4096),
    Workload("connect-16", "connect, one 64-byte line, close; 16 at a time",
             "ThreadingTCPServer", "line", "connect", 16, 64),
    Workload("udp-16", "UDPServer datagram echo, 16 sockets, 64 bytes",
             "UDPServer", "datagram", "udp", 16, 64),
    Workload("threading-udp-16", "ThreadingUDPServer datagram echo, 16 sockets, 64 bytes",
             "ThreadingUDPServer", "datagram", "udp", 16, 64),
    Workload("raw-16x64", "BaseRequestHandler recv/sendall echo, 16 connections, 64 bytes",
             "ThreadingTCPServer", "raw", "pingpong", 16, 64),
    # Not run unless asked for with --workload.
    Workload("sync-1x64", "TCPServer (no threads) line echo, 1 connection, 64-byte lines",
             "TCPServer", "line", "pingpong", 1, 64),
    Workload("stream-16x64", "line echo throughput: 16 connections streaming 64-byte lines",
             "ThreadingTCPServer", "line", "stream", 16, 64),
    Workload("stream-4x4k", "line echo throughput: 4 connections streaming 4 KiB lines",
             "ThreadingTCPServer", "line", "stream", 4, 4096),
    # Greenlet servers; the stdlib, which has none, runs ThreadingTCPServer.
    Workload("greenlet-line-16x64",
             "GreenletTCPServer (stdlib: ThreadingTCPServer) line echo, 16 connections, 64 B",
             "GreenletTCPServer", "line", "pingpong", 16, 64, reference=True),
    Workload("greenlet-line-100x64",
             "GreenletTCPServer (stdlib: ThreadingTCPServer) line echo, 100 connections, 64 B",
             "GreenletTCPServer", "line", "pingpong", 100, 64, reference=True),
    Workload("greenlet-line-16x4k",
             "GreenletTCPServer (stdlib: ThreadingTCPServer) line echo, 16 connections, 4 KiB",
             "GreenletTCPServer", "line", "pingpong", 16, 4096, reference=True),
    Workload("greenlet-connect-16",
             "GreenletTCPServer (stdlib: ThreadingTCPServer) connect, one line, close; 16 at a time",
             "GreenletTCPServer", "line", "connect", 16, 64, reference=True),
    # http.server on HTTP/1.1 keep-alive connections: BaseHTTPRequestHandler answering every
    # GET with HTTP_BODY (headers and body in two writes); cysocketserver runs it after install().
    Workload("http-16", "http.server keep-alive, 16 connections, default handler settings",
             "ThreadingHTTPServer", "http", "http", 16, len(HTTP_BODY)),
    Workload("http-100", "http.server keep-alive, 100 connections, default handler settings",
             "ThreadingHTTPServer", "http", "http", 100, len(HTTP_BODY)),
    Workload("http-nodelay-16",
             "http.server keep-alive, 16 connections, disable_nagle_algorithm = True",
             "ThreadingHTTPServer", "http-nodelay", "http", 16, len(HTTP_BODY)),
    Workload("http-nodelay-100",
             "http.server keep-alive, 100 connections, disable_nagle_algorithm = True",
             "ThreadingHTTPServer", "http-nodelay", "http", 100, len(HTTP_BODY)),
    Workload("greenlet-http-16",
             "GreenletMixIn + HTTPServer (stdlib: ThreadingHTTPServer) keep-alive, 16 connections, "
             "disable_nagle_algorithm = True",
             "GreenletHTTPServer", "http-nodelay", "http", 16, len(HTTP_BODY)),
    Workload("greenlet-http-100",
             "GreenletMixIn + HTTPServer (stdlib: ThreadingHTTPServer) keep-alive, 100 connections, "
             "disable_nagle_algorithm = True",
             "GreenletHTTPServer", "http-nodelay", "http", 100, len(HTTP_BODY)),
    # The bounded thread pool; the stdlib, which has none, runs its Threading* server.
    Workload("pool-line-16x64",
             "ThreadPoolTCPServer (stdlib: ThreadingTCPServer) line echo, 16 connections, 64 B",
             "ThreadPoolTCPServer", "line", "pingpong", 16, 64),
    Workload("pool-line-100x64",
             "ThreadPoolTCPServer (stdlib: ThreadingTCPServer) line echo, 100 connections, 64 B",
             "ThreadPoolTCPServer", "line", "pingpong", 100, 64),
    Workload("pool-connect-16",
             "ThreadPoolTCPServer (stdlib: ThreadingTCPServer) connect, one line, close; 16 at a time",
             "ThreadPoolTCPServer", "line", "connect", 16, 64),
    Workload("pool-udp-16",
             "ThreadPoolUDPServer (stdlib: ThreadingUDPServer) datagram echo, 16 sockets, 64 B",
             "ThreadPoolUDPServer", "datagram", "udp", 16, 64),
    # TCP relays in front of the C echo server: GreenletTCPServer + connect() + relay(), and the
    # stdlib's ThreadingTCPServer with a thread and select() per connection (server.py); with
    # HAProxy and ``python -m cysocketserver proxy`` beside them (proxy.py).
    Workload("proxy-pingpong-16x64", "relay to the C echo server, 16 connections, 64-byte lines",
             "GreenletTCPServer", "relay", "pingpong", 16, 64),
    Workload("proxy-pingpong-100x64", "relay to the C echo server, 100 connections, 64-byte lines",
             "GreenletTCPServer", "relay", "pingpong", 100, 64),
    Workload("proxy-connect-16",
             "relay to the C echo server: connect, one 64-byte line, close; 16 at a time",
             "GreenletTCPServer", "relay", "connect", 16, 64),
    Workload("proxy-stream-8x64k", "relay to the C echo server, 8 connections streaming 64 KiB",
             "GreenletTCPServer", "relay", "stream", 8, 65536),
]

# The stdlib's own servers, then the package's headline -- greenlets (beside the C reference
# echo) and the bounded thread pool -- against the stdlib's threads, http.server, and one proxy
# row (the others: python -m cysocketserver.bench.proxy).
DEFAULT = [w.name for w in WORKLOADS[:8]] + ["greenlet-line-16x64", "pool-line-16x64", "http-16",
                                             "proxy-pingpong-16x64"]
PROXY = [w.name for w in WORKLOADS if w.proxy]

_BY_NAME = {w.name: w for w in WORKLOADS}


def by_name(name):
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(_BY_NAME)}") from None
