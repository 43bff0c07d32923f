"""Typical code written against cysocketserver, fully annotated.

tests/test_typing.py checks it with ``mypy --strict`` against the installed package's stubs and
also runs it: it serves one TCP line and one UDP packet on loopback and exits 0.
"""
from __future__ import annotations

import socket
import sys
import threading

import cysocketserver
import cysocketserver as socketserver

TIMEOUT = 10.0


class UpperLine(socketserver.StreamRequestHandler):
    """Reads one line and sends it back in capitals."""

    timeout = TIMEOUT
    disable_nagle_algorithm = True

    def handle(self) -> None:
        line: bytes = self.rfile.readline(65536)
        sent: int = self.wfile.write(line.upper())
        self.server_seen(sent)

    def server_seen(self, sent: int) -> None:
        server = self.server
        if isinstance(server, CountingServer):
            server.count(sent)


class ReversePacket(socketserver.DatagramRequestHandler):
    """Sends every packet back reversed."""

    def handle(self) -> None:
        packet: bytes = self.rfile.read()
        self.wfile.write(packet[::-1])
        assert self.packet == packet
        assert isinstance(self.socket, socket.socket)


class CountingServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threading TCP server that counts the bytes its handlers sent."""

    # Non-daemon handler threads: server_close() joins them, so the count is final after it.
    daemon_threads = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, UpperLine)
        self.sent = 0
        self._lock = threading.Lock()

    def count(self, sent: int) -> None:
        with self._lock:
            self.sent += sent

    def verify_request(self, request: socket.socket | tuple[bytes, socket.socket],
                       client_address: tuple[str, int]) -> bool:
        return client_address[0] == "127.0.0.1"


def tcp_round_trip() -> bytes:
    with CountingServer(("127.0.0.1", 0)) as server:
        host, port = server.server_address[:2]
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        serving.start()
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT) as client:
                client.sendall(b"hello, typed world\n")
                reply = client.makefile("rb").readline()
        finally:
            server.shutdown()
            serving.join(TIMEOUT)
    assert server.sent == len(reply)
    return reply


def udp_round_trip() -> bytes:
    with socketserver.UDPServer(("127.0.0.1", 0), ReversePacket) as server:
        server.timeout = TIMEOUT
        address = server.server_address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            client.sendto(b"packet", address)
            server.handle_request()
            reply, _sender = client.recvfrom(server.max_packet_size)
        return reply


def main() -> int:
    print("engine:", cysocketserver.IMPLEMENTATION, cysocketserver.__version__)
    tcp = tcp_round_trip()
    udp = udp_round_trip()
    cysocketserver.install()
    installed = sys.modules["socketserver"] is cysocketserver

    ok = tcp == b"HELLO, TYPED WORLD\n" and udp == b"tekcap" and installed
    print("tcp:", tcp, "udp:", udp, "install():", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
