"""The PROXY protocol, receiving: real servers on both engines, real headers over loopback.

The handler reports the client_address it was given and the TLVs the server recorded, then
echoes the first line after the header, which shows that nothing past the header was taken.
"""
import ast
import logging
import socket
import struct
import threading
import time

import pytest

from support_net import HOST, TIMEOUT, connect, recv_until_eof, serving, wait_for

MODEL_SERVERS = ["ThreadingTCPServer", "ThreadPoolTCPServer", "GreenletTCPServer", "TCPServer"]
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# --------------------------------------------------------------------------- header builders


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def v2(command=1, family=1, proto=1, addresses=b"", tlvs=(), crc=None):
    """A v2 header; ``crc`` "good" or "bad" appends a CRC32c TLV."""
    body = addresses + b"".join(bytes([kind]) + struct.pack(">H", len(value)) + value
                                for kind, value in tlvs)
    if crc is not None:
        body += b"\x03\x00\x04\x00\x00\x00\x00"
    head = SIG + bytes([0x20 | command, family << 4 | proto]) + struct.pack(">H", len(body))
    header = head + body
    if crc is not None:
        value = crc32c(header) ^ (0 if crc == "good" else 1)
        header = header[:-4] + struct.pack(">I", value)
    return header


def inet4(src, dst, sport, dport):
    return socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + \
        struct.pack(">HH", sport, dport)


def inet6(src, dst, sport, dport):
    return socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + \
        struct.pack(">HH", sport, dport)


def unix(src, dst):
    return src.ljust(108, b"\0") + dst.ljust(108, b"\0")


VALID = {
    "v1-tcp4": (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", ("192.0.2.1", 56324)),
    "v1-tcp6": (b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n", ("2001:db8::1", 4000, 0, 0)),
    "v1-unknown": (b"PROXY UNKNOWN\r\n", None),
    "v1-unknown-extra": (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
    "v2-inet": (v2(addresses=inet4("203.0.113.9", "10.0.0.1", 1234, 80)), ("203.0.113.9", 1234)),
    "v2-inet6": (v2(family=2, addresses=inet6("2001:db8::7", "::1", 9, 10)),
                 ("2001:db8::7", 9, 0, 0)),
    "v2-unix": (v2(family=3, addresses=unix(b"/run/client.sock", b"/run/server.sock")),
                "/run/client.sock"),
    "v2-unspec": (v2(family=0, proto=0), None),
    "v2-local": (v2(command=0, family=0, proto=0), None),
    "v2-local-with-addresses": (v2(command=0, addresses=inet4("1.2.3.4", "5.6.7.8", 1, 2)), None),
    "v2-tlvs": (v2(addresses=inet4("198.51.100.77", "10.0.0.1", 5555, 443),
                   tlvs=[(0x01, b"h2"), (0x02, b"example.com"), (0x05, b"id-42")]),
                ("198.51.100.77", 5555)),
    "v2-crc-good": (v2(addresses=inet4("198.51.100.8", "10.0.0.1", 7, 8), tlvs=[(0x04, b"pad")],
                       crc="good"), ("198.51.100.8", 7)),
}

INVALID = {
    "garbage": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "malformed"),
    "v1-bad-address": (b"PROXY TCP4 300.1.2.3 1.2.3.4 1 2\r\n", "malformed"),
    "v1-bad-port": (b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", "malformed"),
    "v1-lf-only": (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "malformed"),
    "v1-oversized": (b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n", "oversized"),
    "v2-oversized": (SIG + b"\x21\x11\xff\xff" + b"\0" * 64, "oversized"),
    "v2-bad-command": (SIG + b"\x22\x11\x00\x00", "malformed"),
    "v2-bad-version": (SIG + b"\x11\x11\x00\x00", "malformed"),
    "v2-short-addresses": (SIG + b"\x21\x11\x00\x04\x01\x02\x03\x04", "malformed"),
    "v2-crc-bad": (v2(addresses=inet4("1.2.3.4", "5.6.7.8", 1, 2), crc="bad"), "checksum"),
    "v2-truncated-tlv": (v2(addresses=inet4("1.2.3.4", "5.6.7.8", 1, 2),
                            tlvs=[(0x02, b"abc")])[:-1], "truncated"),
}


# --------------------------------------------------------------------------- servers


def _reporting_handler(ss):
    class Report(ss.StreamRequestHandler):
        def handle(self):
            header = self.server.proxy_header(self.request)
            tlvs = list(header.tlvs) if header is not None else None
            line = self.rfile.readline()
            self.wfile.write(repr((self.client_address, tlvs, line)).encode() + b"\n")

    return Report


def _server(ss, name, mode="any", **attrs):
    attrs = dict(proxy_protocol=mode, request_queue_size=64, **attrs)
    cls = type("S", (getattr(ss, name),), attrs)
    return cls((HOST, 0), _reporting_handler(ss))


def _exchange(address, payload, source=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        if source is not None:
            sock.bind((source, 0))
        sock.connect(address)
        local = sock.getsockname()
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            reply = recv_until_eof(sock)
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            # A refused connection may be closed before the client is done sending.
            if isinstance(exc, TimeoutError):
                raise
            reply = b""
        return reply, local
    finally:
        sock.close()


def _report(reply):
    assert reply, "the server closed the connection without a reply"
    return ast.literal_eval(reply.decode())


# --------------------------------------------------------------------------- valid headers


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_valid_headers_give_the_original_client(cy_ss, name):
    server = _server(cy_ss, name)
    with serving(server):
        for label, (header, expected) in VALID.items():
            reply, local = _exchange(server.server_address, header + b"hello\nmore")
            address, tlvs, line = _report(reply)
            assert address == (expected if expected is not None else local), label
            assert line == b"hello\n", label
            if label == "v2-tlvs":
                assert tlvs == [(0x01, b"h2"), (0x02, b"example.com"), (0x05, b"id-42")]
    assert sum(server.proxy_protocol_refused.values()) == 0


@pytest.mark.parametrize("mode,accepted,refused", [
    ("v1", "v1-tcp4", "v2-inet"),
    ("v2", "v2-inet", "v1-tcp4"),
])
def test_only_the_configured_version_is_accepted(cy_ss, mode, accepted, refused):
    server = _server(cy_ss, "ThreadingTCPServer", mode)
    with serving(server):
        reply, _ = _exchange(server.server_address, VALID[accepted][0] + b"x\n")
        assert _report(reply)[0] == VALID[accepted][1]
        reply, _ = _exchange(server.server_address, VALID[refused][0] + b"x\n")
        assert reply == b""
    assert server.proxy_protocol_refused["malformed"] == 1


def test_registry_entry_holds_the_original_client(cy_ss):
    seen = []

    class Hold(cy_ss.BaseRequestHandler):
        def handle(self):
            seen.append(self.server._connection_registry.get(self.request).client_address)

    cls = type("S", (cy_ss.ThreadingTCPServer,), {"proxy_protocol": "v1"})
    server = cls((HOST, 0), Hold)
    with serving(server):
        _exchange(server.server_address, VALID["v1-tcp4"][0])
        assert wait_for(lambda: seen)
    assert seen == [("192.0.2.1", 56324)]


def test_verify_request_sees_the_original_client(cy_ss):
    verified = []

    class S(cy_ss.ThreadPoolTCPServer):
        proxy_protocol = "any"

        def verify_request(self, request, client_address):
            verified.append(client_address)
            return client_address[0] != "192.0.2.1"

    server = S((HOST, 0), _reporting_handler(cy_ss))
    with serving(server):
        assert _exchange(server.server_address, VALID["v1-tcp4"][0] + b"x\n")[0] == b""
        reply, _ = _exchange(server.server_address, VALID["v2-inet"][0] + b"x\n")
        assert _report(reply)[0] == ("203.0.113.9", 1234)
    assert verified == [("192.0.2.1", 56324), ("203.0.113.9", 1234)]


def test_off_by_default_as_the_stdlib(ss):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline())

    server = ss.ThreadingTCPServer((HOST, 0), Echo)
    with serving(server):
        reply, _ = _exchange(server.server_address, VALID["v1-tcp4"][0])
    assert reply == VALID["v1-tcp4"][0]


# --------------------------------------------------------------------------- refused headers


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_bad_headers_are_refused_counted_and_the_server_keeps_serving(cy_ss, name, caplog):
    server = _server(cy_ss, name, proxy_protocol_timeout=0.5)
    expected = {}
    with caplog.at_level(logging.WARNING, logger="cysocketserver"), serving(server):
        for _round in range(2):
            for label, (payload, cause) in INVALID.items():
                reply, _ = _exchange(server.server_address, payload)
                assert reply == b"", label
                expected[cause] = expected.get(cause, 0) + 1
                # The next client is served.
                reply, _ = _exchange(server.server_address, VALID["v1-tcp4"][0] + b"ok\n")
                assert _report(reply)[2] == b"ok\n", label
    assert dict(server.proxy_protocol_refused) == expected
    records = [r for r in caplog.records if r.name == "cysocketserver"]
    # Once per cause, and never a traceback.
    assert len(records) == len(expected)
    assert all(r.exc_info is None for r in records)


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_truncated_header_refused(cy_ss, name):
    server = _server(cy_ss, name)
    with serving(server):
        for header in (VALID["v1-tcp4"][0][:20], VALID["v2-inet"][0][:20]):
            sock = connect(server.server_address)
            sock.sendall(header)
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == b""
            sock.close()
    assert server.proxy_protocol_refused["truncated"] == 2


@pytest.mark.parametrize("name", ["ThreadingTCPServer", "ThreadPoolTCPServer", "GreenletTCPServer"])
def test_slow_header_does_not_hold_up_other_clients(cy_ss, name):
    server = _server(cy_ss, name, proxy_protocol_timeout=1.0)
    with serving(server):
        stalled = connect(server.server_address)
        try:
            stalled.sendall(VALID["v2-inet"][0][:10])
            # While that one stalls, others are served at once.
            started = time.monotonic()
            for _ in range(3):
                reply, _ = _exchange(server.server_address, VALID["v1-tcp4"][0] + b"x\n")
                assert _report(reply)[0] == ("192.0.2.1", 56324)
            assert time.monotonic() - started < 1.0 + TIMEOUT / 2
            # Then the stalled one is dropped after the timeout.
            assert recv_until_eof(stalled) == b""
        finally:
            stalled.close()
    assert server.proxy_protocol_refused["slow"] == 1


def test_slow_header_on_a_plain_server_waits_the_timeout_then_serves(cy_ss):
    server = _server(cy_ss, "TCPServer", proxy_protocol_timeout=0.3)
    with serving(server):
        stalled = connect(server.server_address)
        stalled.sendall(b"PROXY TCP4 ")
        assert recv_until_eof(stalled) == b""
        stalled.close()
        reply, _ = _exchange(server.server_address, VALID["v1-tcp4"][0] + b"x\n")
        assert _report(reply)[0] == ("192.0.2.1", 56324)
    assert server.proxy_protocol_refused["slow"] == 1


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_untrusted_peer_refused(cy_ss, name):
    server = _server(cy_ss, name, proxy_protocol_trusted=["127.0.0.1/32"])
    with serving(server):
        reply, local = _exchange(server.server_address, VALID["v1-tcp4"][0] + b"x\n",
                                 source="127.0.0.2")
        assert reply == b""
        reply, _ = _exchange(server.server_address, VALID["v1-tcp4"][0] + b"x\n",
                             source="127.0.0.1")
        assert _report(reply)[0] == ("192.0.2.1", 56324)
    assert dict(server.proxy_protocol_refused) == {"untrusted": 1}


def test_header_byte_by_byte_is_accepted(cy_ss):
    server = _server(cy_ss, "ThreadingTCPServer")
    with serving(server):
        for header, expected in (VALID["v1-tcp6"], VALID["v2-crc-good"]):
            sock = connect(server.server_address)
            with sock:
                for i in range(len(header)):
                    sock.sendall(header[i:i + 1])
                    time.sleep(0.001)
                sock.sendall(b"after\n")
                address, _tlvs, line = _report(recv_until_eof(sock))
            assert address == expected and line == b"after\n"


@pytest.mark.parametrize("attrs,error", [
    ({"proxy_protocol": "v3"}, ValueError),
    ({"proxy_protocol": True}, ValueError),
    ({"proxy_protocol_timeout": 0}, ValueError),
    ({"proxy_protocol_timeout": "3"}, TypeError),
    ({"proxy_protocol_trusted": ["not a network"]}, ValueError),
    ({"proxy_protocol_trusted": [42]}, TypeError),
])
def test_bad_settings_raise_when_serving_starts(cy_ss, attrs, error):
    attrs = {"proxy_protocol": "any", **attrs}
    cls = type("S", (cy_ss.ThreadingTCPServer,), attrs)
    with cls((HOST, 0), _reporting_handler(cy_ss)) as server:
        with pytest.raises(error):
            server.handle_request()


def test_datagram_server_refuses_the_setting(cy_ss):
    cls = type("S", (cy_ss.UDPServer,), {"proxy_protocol": "v2"})
    with cls((HOST, 0), cy_ss.DatagramRequestHandler) as server:
        with pytest.raises(ValueError, match="stream"):
            server.handle_request()


# --------------------------------------------------------------------------- the parser twins

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from cysocketserver._proxycommon import ANY, V1, V2  # noqa: E402
from cysocketserver.proxyprotocol import ProxyProtocolError  # noqa: E402


def _parsers():
    from cysocketserver import _engine

    names = [name for name in ("compiled", "python") if _engine.available(name)]
    return [_engine.load(name).proxyproto for name in names]


def _outcome(parser, function, data, accepted):
    try:
        return "ok", getattr(parser, function)(data, accepted)
    except ProxyProtocolError as exc:
        return "error", exc.cause


def _agree(data, accepted):
    """Both twins give the same result or the same refusal, for scan() and parse()."""
    outcomes = []
    for function in ("scan", "parse"):
        results = [_outcome(parser, function, data, accepted) for parser in _parsers()]
        assert all(result == results[0] for result in results), (function, data, results)
        outcomes.append(results[0])
    return outcomes


def test_both_parsers_are_there():
    from cysocketserver import _engine

    if not _engine.available("compiled"):
        pytest.skip("the compiled engine is not built in this install")
    assert len(_parsers()) == 2


def test_one_parser_source_compiled_for_one_engine_and_run_as_python_for_the_other():
    import importlib.machinery
    import inspect

    from cysocketserver import _engine

    pure = _engine.load("python").proxyproto
    assert pure.__file__.endswith("_proxyproto.py")
    assert inspect.isfunction(pure.parse) and inspect.isfunction(pure.scan)
    if not _engine.available("compiled"):
        pytest.skip("the compiled engine is not built in this install")
    compiled = _engine.load("compiled").proxyproto
    assert compiled is not pure
    assert isinstance(compiled.__spec__.loader, importlib.machinery.ExtensionFileLoader)
    assert compiled.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert not inspect.isfunction(compiled.parse) and not inspect.isfunction(compiled.scan)


def test_header_types_have_a_public_home():
    import cysocketserver.proxyprotocol as public
    from cysocketserver import _engine

    for name in ("compiled", "python"):
        if not _engine.available(name):
            continue
        header = _engine.load(name).proxyproto.parse(VALID["v2-tlvs"][0], ANY)
        assert type(header) is public.ProxyHeader
        assert type(header).__module__ == "cysocketserver.proxyprotocol"
        with pytest.raises(public.ProxyProtocolError) as refused:
            _engine.load(name).proxyproto.parse(b"PROXY TCP4 nonsense\r\n", ANY)
        assert refused.value.cause == "malformed"


@pytest.mark.parametrize("label", sorted(VALID))
def test_every_truncation_of_a_valid_header(label):
    header = VALID[label][0]
    accepted = ANY
    for cut in range(len(header)):
        scanned, parsed = _agree(header[:cut], accepted)
        # A prefix is never a header: more is needed (0, or the whole length once a v2 fixed
        # part is in) and parse() says it is incomplete.
        assert scanned in (("ok", 0), ("ok", len(header))), (label, cut)
        assert parsed == ("error", "truncated"), (label, cut)
    scanned, parsed = _agree(header, accepted)
    assert scanned == ("ok", len(header))
    assert parsed[0] == "ok" and parsed[1].source == VALID[label][1]
    # The wrong version alone is refused at once, whatever the length.
    other = V2 if header.startswith(b"PROXY") else V1
    assert _agree(header, other)[0] == ("error", "malformed")


@pytest.mark.parametrize("label", sorted(INVALID))
def test_invalid_headers_same_refusal_from_both(label):
    payload, cause = INVALID[label]
    scanned, parsed = _agree(payload, ANY)
    if cause == "truncated":
        assert scanned[0] == "ok" and scanned[1] > len(payload)
    elif scanned[0] == "ok" and scanned[1] and scanned[1] <= len(payload):
        assert _agree(payload[:scanned[1]], ANY)[1] == ("error", cause)
    else:
        assert scanned == ("error", cause) or parsed == ("error", cause)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([V1, V2, ANY]))
def test_random_bytes_same_answer_from_both(data, accepted):
    _agree(data, accepted)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.binary(max_size=40), st.integers(0, 400))
def test_mutated_headers_same_answer_from_both(label, noise, where):
    header = VALID[label][0]
    where = min(where, len(header))
    _agree(header[:where] + noise + header[where + len(noise):], ANY)
    _agree(header[:where] + noise, ANY)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["198.51.100.1", "2001:db8::5", "::ffff:1.2.3.4"]),
       st.integers(0, 65535), st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=30)),
                                       max_size=4), st.booleans())
def test_generated_v2_headers_round_trip(host, port, tlvs, with_crc):
    tlvs = [(kind, value) for kind, value in tlvs if kind != 0x03]
    if ":" in host:
        header = v2(family=2, addresses=inet6(host, "::1", port, 1), tlvs=tlvs,
                    crc="good" if with_crc else None)
        expected = (socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, host)),
                    port, 0, 0)
    else:
        header = v2(addresses=inet4(host, "10.0.0.1", port, 1), tlvs=tlvs,
                    crc="good" if with_crc else None)
        expected = (host, port)
    _scanned, parsed = _agree(header, V2)
    assert parsed[0] == "ok" and parsed[1].source == expected
    assert [tlv for tlv in parsed[1].tlvs if tlv[0] != 0x03] == tlvs


def test_crc32c_known_value():
    for parser in _parsers():
        assert parser.crc32c(b"123456789") == 0xE3069283


# --------------------------------------------------------------------------- other families


def test_ipv6_listener_trusts_loopback_by_default(cy_ss):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    cls = type("S", (cy_ss.ThreadingTCPServer,),
               {"proxy_protocol": "any", "address_family": socket.AF_INET6})
    try:
        server = cls(("::1", 0), _reporting_handler(cy_ss))
    except OSError as exc:
        pytest.skip("no IPv6 loopback: %s" % exc)
    with serving(server):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(server.server_address[:2])
            sock.sendall(VALID["v2-inet6"][0] + b"six\n")
            address, _tlvs, line = _report(recv_until_eof(sock))
    assert address == ("2001:db8::7", 9, 0, 0) and line == b"six\n"


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix-domain sockets")
def test_unix_stream_server_reads_the_header(cy_ss, short_tmp):
    import os

    path = os.path.join(short_tmp, "s")
    cls = type("S", (cy_ss.ThreadingUnixStreamServer,), {"proxy_protocol": "v1"})
    server = cls(path, _reporting_handler(cy_ss))
    with serving(server):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            sock.sendall(VALID["v1-tcp4"][0] + b"unix\n")
            address, _tlvs, line = _report(recv_until_eof(sock))
    assert address == ("192.0.2.1", 56324) and line == b"unix\n"
