"""One echo server for the benchmark, in a process of its own.

    python server.py --impl stdlib --server ThreadingTCPServer --handler line

The harness (harness.py) starts this file by its path, so a stdlib server never imports
cysocketserver.  It binds port 0 on the loopback address, prints one JSON line
(``{"port": ..., "engine": ..., "pid": ...}``) and serves until its standard input closes
(the harness went away), it is killed, or ``--max-seconds`` pass.

The socketserver handlers are written once (make_handlers) and built on whichever module
``--impl`` names, so both implementations run the very same code.  The peers (asyncio,
uvloop, gevent) and the C reference echo serve the same bytes in their own idiom.  The http
handlers are the stdlib's http.server (make_http_handler), which cysocketserver runs after
``install()``.  The relay handler (``--handler relay --upstream PORT``) is a TCP proxy in front
of an echo server on PORT, each side in its own idiom (serve_relay).
"""
import argparse
import json
import os
import select
import socket
import sys
import threading

# Started by path: its own folder must not shadow anything on the import path.
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]

IMPLS = ("stdlib", "cysocketserver", "asyncio", "uvloop", "gevent", "reference")
HANDLERS = ("line", "raw", "datagram", "http", "http-nodelay", "relay")
SERVERS = ("TCPServer", "ThreadingTCPServer", "UDPServer", "ThreadingUDPServer",
           "GreenletTCPServer", "ThreadingHTTPServer", "GreenletHTTPServer",
           "ThreadPoolTCPServer", "ThreadPoolUDPServer")
# The pool's size in the benchmark: a thread for each of the 100-connection workloads' clients.
POOL_THREADS = 128
# The stdlib's default listen backlog (5) overflows as soon as more clients connect at once,
# and then the numbers measure SYN retransmissions.  Every server here gets the same backlog.
BACKLOG = 128


def make_handlers(ss):
    """The benchmark's request handlers, on socketserver module ss."""

    class LineEcho(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    class RawEcho(ss.BaseRequestHandler):
        def handle(self):
            sock = self.request
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data)

    class DatagramEcho(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.read())

    return {"line": LineEcho, "raw": RawEcho, "datagram": DatagramEcho}


def make_http_handler(http_server, body, nodelay):
    """http.server's BaseHTTPRequestHandler on keep-alive connections, answering body to GET.

    As most handlers do, it writes the headers (end_headers) and then the body: two writes.
    """

    class Hello(http_server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = nodelay

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Hello


def announce(port, engine):
    sys.stdout.write(json.dumps({"port": port, "engine": engine, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()


def watch_parent(max_seconds):
    """Leave when the harness closes our stdin, or after max_seconds in any case."""

    def reader():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os._exit(0)

    threading.Thread(target=reader, daemon=True).start()
    timer = threading.Timer(max_seconds, os._exit, (3,))
    timer.daemon = True
    timer.start()


def serve_http(args):
    if args.impl == "stdlib":
        engine = "stdlib"
    else:
        import cysocketserver

        cysocketserver.install()       # before http.server takes socketserver's classes
        engine = cysocketserver.IMPLEMENTATION
    import http.server

    handler = make_http_handler(http.server, args.http_body.encode(),
                                args.handler == "http-nodelay")
    if args.server == "GreenletHTTPServer" and args.impl != "stdlib":
        base = type("GreenletHTTPServer", (cysocketserver.GreenletMixIn, http.server.HTTPServer), {})
    else:
        # The stdlib has no greenlet servers: it is measured with its threads.
        base = http.server.ThreadingHTTPServer

    class Server(base):
        daemon_threads = True
        request_queue_size = BACKLOG

    with Server((args.host, 0), handler) as server:
        announce(server.server_address[1], engine)
        server.serve_forever()


def stdlib_relay(ss, upstream):
    """What a proxy on the stdlib alone looks like: a thread per connection (the server's),
    connecting upstream and copying both ways with select()."""

    class Relay(ss.BaseRequestHandler):
        def handle(self):
            up = socket.create_connection(upstream)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            other = {self.request: up, up: self.request}
            reading = [self.request, up]
            try:
                while reading:
                    readable, _, _ = select.select(reading, [], [])
                    for sock in readable:
                        data = sock.recv(65536)
                        if data:
                            other[sock].sendall(data)
                        else:
                            other[sock].shutdown(socket.SHUT_WR)
                            reading.remove(sock)
            except OSError:
                pass
            finally:
                up.close()

    return Relay


def package_relay(ss, upstream):
    """The same proxy on this package's blocks: connect() and relay() in a greenlet."""

    class Relay(ss.BaseRequestHandler):
        def handle(self):
            up = ss.connect(upstream)
            try:
                up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ss.relay(self.request, up)
            finally:
                up.close()

    return Relay


def serve_socketserver(args):
    if args.handler.startswith("http"):
        return serve_http(args)
    if args.impl == "stdlib":
        import socketserver as ss
        engine = "stdlib"
    else:
        import cysocketserver as ss
        engine = ss.IMPLEMENTATION
    if args.handler == "relay":
        make_relay = stdlib_relay if args.impl == "stdlib" else package_relay
        handler = make_relay(ss, (args.host, args.upstream))
    else:
        handler = make_handlers(ss)[args.handler]
    name = args.server
    for ours in ("Greenlet", "ThreadPool"):
        if not hasattr(ss, name) and name.startswith(ours):
            # The stdlib has no greenlet or pool servers: it is measured with its threads.
            name = "Threading" + name[len(ours):]
    base = getattr(ss, name)

    class Server(base):
        daemon_threads = True
        request_queue_size = BACKLOG
        max_threads = POOL_THREADS

    with Server((args.host, 0), handler) as server:
        announce(server.server_address[1], engine)
        server.serve_forever()


def serve_asyncio(args, run=None):
    import asyncio

    async def echo_lines(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write(line)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    class DatagramEcho(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    async def main():
        loop = asyncio.get_running_loop()
        if args.handler == "datagram":
            transport, _ = await loop.create_datagram_endpoint(
                DatagramEcho, local_addr=(args.host, 0))
            announce(transport.get_extra_info("sockname")[1], args.impl)
            await asyncio.Event().wait()
        else:
            server = await asyncio.start_server(echo_lines, args.host, 0, backlog=BACKLOG)
            announce(server.sockets[0].getsockname()[1], args.impl)
            await server.serve_forever()

    (run or asyncio.run)(main())


def serve_uvloop(args):
    import uvloop

    if hasattr(uvloop, "run"):
        serve_asyncio(args, uvloop.run)
    else:
        import asyncio
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        serve_asyncio(args)


def serve_gevent(args):
    from gevent.server import DatagramServer, StreamServer

    if args.handler == "datagram":
        class Echo(DatagramServer):
            def handle(self, data, address):
                self.socket.sendto(data, address)

        server = Echo((args.host, 0))
    else:
        def echo_lines(sock, address):
            rfile = sock.makefile("rb")
            try:
                for line in rfile:
                    sock.sendall(line)
            except OSError:
                pass
            finally:
                rfile.close()

        server = StreamServer((args.host, 0), echo_lines, backlog=BACKLOG)
    server.start()
    announce(server.address[1], "gevent")
    server.serve_forever()


def serve_reference(args):
    import socket

    from cysocketserver import _loadgen

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    kind = socket.SOCK_DGRAM if args.handler == "datagram" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.bind((args.host, 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        announce(sock.getsockname()[1], "C epoll echo" if _loadgen.BACKEND == "epoll"
                 else "C poll echo")
        _loadgen.reference_serve(sock.fileno(), kind == socket.SOCK_DGRAM, args.max_seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description="one echo server for the benchmark")
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--server", choices=SERVERS, default="ThreadingTCPServer")
    parser.add_argument("--handler", choices=HANDLERS, default="line")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cpus", default="", help="CPUs to run on, e.g. 1 or 0,1")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--http-body", default="", help="http handlers: the body of every answer")
    parser.add_argument("--upstream", type=int, help="relay handler: the echo server's port")
    args = parser.parse_args(argv)
    if args.handler == "relay" and not args.upstream:
        parser.error("--handler relay needs --upstream PORT")
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    watch_parent(args.max_seconds)
    serve = {
        "stdlib": serve_socketserver,
        "cysocketserver": serve_socketserver,
        "asyncio": serve_asyncio,
        "uvloop": serve_uvloop,
        "gevent": serve_gevent,
        "reference": serve_reference,
    }[args.impl]
    try:
        serve(args)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
