"""Child processes for tests/test_hub_fairness.py and tests/test_hub_fork.py.

    python support_hub.py echo-server             a GreenletTCPServer line echo; prints PORT n,
                                                  serves until its stdin closes
    python support_hub.py pipeline PORT SECONDS   one client that pipelines lines while it reads
                                                  the echoes, for SECONDS; prints STARTED, then
                                                  PIPELINE {"lines": ...}

The engine is the one CYSOCKETSERVER_NO_EXTENSIONS selects.  Every wait is bounded.
"""
import json
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
TIMEOUT = 20.0


def echo_server():
    import cysocketserver

    class LineEcho(cysocketserver.StreamRequestHandler):
        def handle(self):
            try:
                for line in self.rfile:
                    self.wfile.write(line)
            except ConnectionError:
                pass  # the pipelining client leaves without reading the rest

    class Server(cysocketserver.GreenletTCPServer):
        request_queue_size = 128
        block_on_close = False

    server = Server((HOST, 0), LineEcho)

    def stop_when_stdin_closes():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print("PORT", server.server_address[1], cysocketserver.IMPLEMENTATION, flush=True)
    server.serve_forever(poll_interval=None)
    server.server_close()


def pipeline(port, seconds):
    """Keep the server's side of one connection always ready to read and to write."""
    line = b"0123456789abcdef\n"
    chunk = line * 4096
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    received = [0]

    def reader():
        announced = False
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            received[0] += len(data)
            if not announced:
                announced = True
                print("STARTED", flush=True)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sock.sendall(chunk)
    finally:
        # No drain: what the server still has queued is not this client's business any more.
        sock.shutdown(socket.SHUT_RDWR)
        t.join(TIMEOUT)
        sock.close()
    print("PIPELINE", json.dumps({"lines": received[0] // len(line)}), flush=True)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "echo-server":
        echo_server()
    elif role == "pipeline":
        pipeline(int(sys.argv[2]), float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown role {role}")
