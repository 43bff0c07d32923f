"""Drives one of the stdlib's socketserver-based servers with a real client.

Usage: python support_stdlib_servers.py {stdlib|cy} CASE

With ``cy`` the script calls ``cysocketserver.install()`` (twice: it must be
idempotent) before importing any stdlib server module, then checks that the
server classes really are built on cysocketserver.  With ``stdlib`` the same
client checks run on the untouched stdlib, as a control for the harness.

Prints ``CASE-OK <case>`` on success; any failure raises (non-zero exit).
"""
import hashlib
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

TIMEOUT = 15.0
SERVER_MODULES = ("http.server", "xmlrpc.server", "wsgiref.simple_server", "logging.config")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def setup_module_under_test(mode):
    for name in SERVER_MODULES + ("socketserver",):
        check(name not in sys.modules, f"{name} was imported before the test started")
    if mode == "stdlib":
        import socketserver

        return socketserver
    import cysocketserver

    cysocketserver.install()
    cysocketserver.install()  # idempotent
    check(sys.modules["socketserver"] is cysocketserver, "install() did not take")
    import socketserver

    check(socketserver is cysocketserver, "import socketserver is not cysocketserver")
    return cysocketserver


def serve_in_thread(server):
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    return t


def stop(server, thread):
    done = threading.Thread(target=server.shutdown, daemon=True)
    done.start()
    done.join(TIMEOUT)
    check(not done.is_alive(), "shutdown() hung")
    thread.join(TIMEOUT)
    check(not thread.is_alive(), "serve_forever did not return")
    server.server_close()


# --------------------------------------------------------------------------- cases


def case_http_files(ss):
    import http.client
    import http.server
    from functools import partial

    check(issubclass(http.server.HTTPServer, ss.TCPServer), "HTTPServer base")
    check(issubclass(http.server.ThreadingHTTPServer, ss.ThreadingMixIn), "ThreadingHTTPServer base")

    root = tempfile.mkdtemp(prefix="cyss-http-")
    try:
        big = os.urandom(6 * 1024 * 1024 + 123)
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(big)
        with open(os.path.join(root, "hello.txt"), "wb") as f:
            f.write(b"hello, world\n")
        os.mkdir(os.path.join(root, "sub"))
        with open(os.path.join(root, "sub", "index.html"), "wb") as f:
            f.write(b"<html>index</html>")

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=root)
        )
        check(isinstance(server, ss.TCPServer), "server instance")
        thread = serve_in_thread(server)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=TIMEOUT)
            peers = set()
            for path, expected in [
                ("/hello.txt", b"hello, world\n"),
                ("/big.bin", big),
                ("/sub/", b"<html>index</html>"),
                ("/hello.txt", b"hello, world\n"),
            ]:
                conn.request("GET", path)
                peers.add(conn.sock.getsockname())
                resp = conn.getresponse()
                body = resp.read()
                check(resp.status == 200, f"{path}: status {resp.status}")
                check(body == expected, f"{path}: body differs ({len(body)} vs {len(expected)} bytes)")
                check(int(resp.getheader("Content-Length")) == len(expected), f"{path}: length")
            check(len(peers) == 1, f"keep-alive broken: {len(peers)} connections used")
            conn.request("GET", "/missing")
            resp = conn.getresponse()
            resp.read()
            check(resp.status == 404, f"missing: {resp.status}")
            conn.close()
        finally:
            stop(server, thread)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def case_https(ss):
    import http.client
    import http.server
    import ssl

    from support_net import test_certificate

    workdir = tempfile.mkdtemp(prefix="cyss-tls-")
    try:
        certificate = test_certificate(workdir)
        if certificate is None:
            print("CASE-SKIP no certificate available")
            return

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = ("secure %s via %s" % (self.path, type(self.request).__name__)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = serve_in_thread(server)
        try:
            client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client_context.check_hostname = False
            client_context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(
                "127.0.0.1", server.server_address[1], timeout=TIMEOUT, context=client_context
            )
            for path in ("/a", "/b", "/c"):
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                check(resp.status == 200, f"{path}: {resp.status}")
                check(body == ("secure %s via SSLSocket" % path).encode(), body)
            conn.close()
        finally:
            stop(server, thread)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def case_http_post(ss):
    import http.client
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            n = int(self.headers["Content-Length"])
            body = self.rfile.read(n)
            reply = json.dumps(
                {"len": len(body), "sha256": hashlib.sha256(body).hexdigest(), "path": self.path}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = serve_in_thread(server)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=TIMEOUT)
        for size in (0, 10, 8 * 1024 * 1024 + 7):
            body = os.urandom(size)
            conn.request("POST", "/upload/%d" % size, body=body)
            resp = conn.getresponse()
            data = json.loads(resp.read())
            check(resp.status == 200, f"status {resp.status}")
            check(
                data == {"len": size, "sha256": hashlib.sha256(body).hexdigest(), "path": "/upload/%d" % size},
                f"POST {size}: {data}",
            )
        conn.close()
    finally:
        stop(server, thread)


def case_xmlrpc(ss):
    import xmlrpc.client
    import xmlrpc.server

    check(issubclass(xmlrpc.server.SimpleXMLRPCServer, ss.TCPServer), "SimpleXMLRPCServer base")

    server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
    server.register_introspection_functions()
    server.register_multicall_functions()
    server.register_function(lambda a, b: a + b, "add")
    server.register_function(lambda s: s * 1000, "repeat")

    def fail():
        raise ValueError("nope")

    server.register_function(fail, "fail")
    thread = serve_in_thread(server)
    try:
        url = "http://127.0.0.1:%d/RPC2" % server.server_address[1]
        with xmlrpc.client.ServerProxy(url) as proxy:
            check(proxy.add(2, 3) == 5, "add")
            check(proxy.add("a", "b") == "ab", "add strings")
            check(proxy.repeat("xyz") == "xyz" * 1000, "repeat")
            check("add" in proxy.system.listMethods(), "listMethods")
            try:
                proxy.fail()
            except xmlrpc.client.Fault as fault:
                check("nope" in fault.faultString, fault.faultString)
            else:
                raise AssertionError("Fault expected")
            multi = xmlrpc.client.MultiCall(proxy)
            multi.add(1, 1)
            multi.add(2, 2)
            check(list(multi()) == [2, 4], "multicall")
    finally:
        stop(server, thread)


def case_wsgiref(ss):
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    check(issubclass(WSGIServer, ss.TCPServer), "WSGIServer base")

    def app(environ, start_response):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        payload = ("%s %s %d %s" % (
            environ["REQUEST_METHOD"], environ["PATH_INFO"], len(body),
            environ.get("QUERY_STRING", ""),
        )).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Test", "cyss")])
        return [payload]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    check(isinstance(server, ss.TCPServer), "server instance")
    thread = serve_in_thread(server)
    try:
        base = "http://127.0.0.1:%d" % server.server_address[1]
        with urllib.request.urlopen(base + "/hello?x=1", timeout=TIMEOUT) as resp:
            check(resp.status == 200, "status")
            check(resp.headers["X-Test"] == "cyss", "header")
            check(resp.read() == b"GET /hello 0 x=1", "GET body")
        req = urllib.request.Request(base + "/post", data=b"q" * 100000, method="POST")
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            check(resp.read() == b"POST /post 100000 ", "POST body")
    finally:
        stop(server, thread)


def case_logging_config(ss):
    import logging
    import logging.config

    check(logging.config.ThreadingTCPServer is ss.ThreadingTCPServer, "logging.config base")
    check(logging.config.StreamRequestHandler is ss.StreamRequestHandler, "logging.config handler")

    probe = logging.getLogger("cyss.probe")
    check(probe.level == logging.NOTSET, "probe logger pre-configured")

    t = logging.config.listen(0)
    t.daemon = True
    t.start()
    check(t.ready.wait(TIMEOUT), "listener never became ready")
    port = t.port
    check(port, "no port")
    check(isinstance(logging.config._listener, ss.ThreadingTCPServer), "listener instance")

    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {"cyss.probe": {"level": "DEBUG"}},
    }
    data = json.dumps(config).encode("utf-8")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(struct.pack(">L", len(data)) + data)
    deadline = time.monotonic() + TIMEOUT
    while probe.level != logging.DEBUG and time.monotonic() < deadline:
        time.sleep(0.01)
    check(probe.level == logging.DEBUG, f"config not applied (level {probe.level})")

    # A second, file-style config over the same listener.
    ini = (
        "[loggers]\nkeys=root,probe\n[handlers]\nkeys=\n[formatters]\nkeys=\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n"
        "[logger_probe]\nlevel=ERROR\nhandlers=\nqualname=cyss.probe\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(struct.pack(">L", len(ini)) + ini)
    deadline = time.monotonic() + TIMEOUT
    while probe.level != logging.ERROR and time.monotonic() < deadline:
        time.sleep(0.01)
    check(probe.level == logging.ERROR, f"fileConfig not applied (level {probe.level})")

    logging.config.stopListening()
    t.join(TIMEOUT)
    check(not t.is_alive(), "listener thread did not stop")


def keepalive_seconds(server_class, requests):
    """Seconds that ``requests`` GETs in a row take on one keep-alive connection (http.client).

    The handler answers as http.server does: the headers in one write, the body in another.
    """
    import http.client
    import http.server

    body = b"Hello world\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = server_class(("127.0.0.1", 0), Handler)
    thread = serve_in_thread(server)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=TIMEOUT)
        peers = set()
        started = time.monotonic()
        for _ in range(requests):
            conn.request("GET", "/")
            peers.add(conn.sock.getsockname())
            resp = conn.getresponse()
            check(resp.status == 200 and resp.read() == body, "bad response")
        elapsed = time.monotonic() - started
        conn.close()
        check(len(peers) == 1, f"keep-alive broken: {len(peers)} connections used")
        return elapsed
    finally:
        stop(server, thread)


def case_http_keepalive(ss):
    # Sequential requests on one keep-alive connection, default handler settings. Nagle's
    # algorithm holds each body until the client acknowledges the headers, which it delays
    # (~40 ms on Linux): the stdlib's servers take that per request, ours must not.
    import http.server

    requests = 30
    stall = 0.04
    servers = [http.server.HTTPServer, http.server.ThreadingHTTPServer]
    if ss.__name__ != "socketserver":
        try:
            mixin = ss.GreenletMixIn
        except ImportError as exc:  # greenlet missing: the other servers are still checked
            print(f"GreenletMixIn skipped: {exc}")
        else:

            class GreenletHTTPServer(mixin, http.server.HTTPServer):
                pass

            servers.append(GreenletHTTPServer)
    for server_class in servers:
        elapsed = keepalive_seconds(server_class, requests)
        print(f"{server_class.__name__}: {requests} requests in {elapsed * 1000:.0f} ms")
        if ss.__name__ != "socketserver":
            # Generous: a quarter of the stall per request, on a loaded machine.
            check(elapsed < requests * stall / 4,
                  f"{server_class.__name__}: {requests} keep-alive requests took {elapsed:.2f} s")
        elif sys.platform.startswith("linux"):
            # The control: the stall this case guards against is real on this system.
            check(elapsed > requests * stall / 4,
                  f"the stdlib's {server_class.__name__} did not stall ({elapsed:.2f} s): "
                  "this case no longer tells the two apart")


def case_install(ss):
    import importlib

    if ss.__name__ == "socketserver":
        return
    import cysocketserver

    for _ in range(3):
        cysocketserver.install()
    check(sys.modules["socketserver"] is cysocketserver, "sys.modules")
    check(importlib.import_module("socketserver") is cysocketserver, "import_module")
    import http.server

    check(http.server.socketserver is cysocketserver, "http.server.socketserver")
    check(issubclass(http.server.HTTPServer, cysocketserver.TCPServer), "HTTPServer base")


CASES = {
    "http_files": case_http_files,
    "http_post": case_http_post,
    "https": case_https,
    "xmlrpc": case_xmlrpc,
    "wsgiref": case_wsgiref,
    "logging_config": case_logging_config,
    "install": case_install,
    "http_keepalive": case_http_keepalive,
}


def main(argv):
    mode, case = argv[1], argv[2]
    ss = setup_module_under_test(mode)
    CASES[case](ss)
    print(f"CASE-OK {case} implementation={getattr(ss, 'IMPLEMENTATION', 'stdlib')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
