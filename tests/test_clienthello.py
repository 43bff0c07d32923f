"""The ClientHello (SNI) parser, on both engines: the ClientHellos Python's ssl module sends
(with and without a server name, TLS 1.2 and 1.3), cut at every byte and spread over several
records, and fuzzed: it answers "more", a name, or its own error, and never asks for more than
its bound."""
import ssl
import struct

import pytest

from cysocketserver import _engine

ENGINES = [name for name in ("compiled", "python") if _engine.available(name)]


@pytest.fixture(params=ENGINES)
def parser(request):
    return _engine.load(request.param).clienthello


def client_hello(server_name=None, maximum=None, groups=None):
    """What Python's ssl client sends first (the records of its ClientHello)."""
    context = ssl.create_default_context()
    if server_name is None:
        context.check_hostname = False
    if maximum is not None:
        context.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


HELLOS = {
    "tls13-sni": ("a.test", None),
    "tls13-no-sni": (None, None),
    "tls12-sni": ("b.example.org", ssl.TLSVersion.TLSv1_2),
    "tls12-no-sni": (None, ssl.TLSVersion.TLSv1_2),
}


def resplit(records, size):
    """The same handshake bytes, in records of at most ``size`` bytes each."""
    handshake = b""
    at = 0
    while at < len(records):
        length = struct.unpack_from("!H", records, at + 3)[0]
        handshake += records[at + 5:at + 5 + length]
        at += 5 + length
    head = records[:3]
    return b"".join(head + struct.pack("!H", len(handshake[i:i + size])) + handshake[i:i + size]
                    for i in range(0, len(handshake), size))


def feed_all_prefixes(parser, data):
    """Every prefix of ``data`` asks for more, and never for more than the whole; the whole
    gives the answer."""
    for cut in range(len(data)):
        wanted, name = parser.server_name(data[:cut])
        assert cut < wanted <= len(data), (cut, wanted)
        assert name is None
    return parser.server_name(data)


@pytest.mark.parametrize("which", sorted(HELLOS))
def test_real_client_hellos_at_every_cut(parser, which):
    name, maximum = HELLOS[which]
    data = client_hello(name, maximum)
    assert feed_all_prefixes(parser, data) == (0, name)
    # Bytes after the ClientHello (the client's next records) change nothing.
    assert parser.server_name(data + b"\x17\x03\x03\x00\x01x") == (0, name)


@pytest.mark.parametrize("size", [10, 100, 512])
def test_a_client_hello_spread_over_several_records(parser, size):
    data = resplit(client_hello("a.test"), size)
    assert feed_all_prefixes(parser, data) == (0, "a.test")


def test_a_large_client_hello_spread_over_records_and_segments(parser):
    # Padding the session ticket area is not possible from Python; a long name list in SNI's
    # place is: a hand-built ClientHello of about 5 KB, as post-quantum key shares make them.
    hello = build_hello(b"big.test", extra=20 * [(0xFFCE, 250 * b"k")])
    assert len(hello) > 5000
    data = resplit(records_of(hello), 1400)
    assert feed_all_prefixes(parser, data) == (0, "big.test")


def build_hello(name, extra=(), version=b"\x03\x03"):
    """A minimal ClientHello handshake message naming ``name`` (None: no SNI)."""
    extensions = []
    if name is not None:
        entry = b"\x00" + struct.pack("!H", len(name)) + name
        body = struct.pack("!H", len(entry)) + entry
        extensions.append((0, body))
    extensions.extend(extra)
    blob = b"".join(struct.pack("!HH", kind, len(body)) + body for kind, body in extensions)
    hello = (version + 32 * b"r" + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
             + struct.pack("!H", len(blob)) + blob)
    return b"\x01" + struct.pack("!I", len(hello))[1:] + hello


def records_of(handshake, size=16384):
    return b"".join(b"\x16\x03\x01" + struct.pack("!H", len(handshake[i:i + size]))
                    + handshake[i:i + size] for i in range(0, len(handshake), size))


def test_a_client_hello_without_extensions_names_nothing(parser):
    hello = (b"\x03\x03" + 32 * b"r" + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00")
    message = b"\x01" + struct.pack("!I", len(hello))[1:] + hello
    assert parser.server_name(records_of(message)) == (0, None)


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\n", "not TLS"),
    (b"\x80\x2e\x01\x03\x01", "not TLS"),           # an SSLv2-style hello
    (b"\x16\x02", "not TLS"),
    (b"\x16\x03\x01\x00\x00", "malformed"),         # an empty record
    (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "malformed"),  # a ServerHello
    (b"\x16\x03\x01\x40\x01", "malformed"),         # a record over 16 KiB
    (b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", "too large"),      # a 64 KiB ClientHello
])
def test_what_is_refused_and_why(parser, data, reason):
    with pytest.raises(parser.ClientHelloError) as caught:
        parser.server_name(data)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_a_record_of_another_type_inside_the_client_hello_is_refused(parser):
    data = records_of(build_hello(b"a.test"), 20)
    cut = 25
    with pytest.raises(parser.ClientHelloError) as caught:
        parser.server_name(data[:cut] + b"\x17" + data[cut + 1:])
    assert caught.value.reason == "malformed"


def test_too_many_records_are_refused(parser):
    data = records_of(build_hello(b"a.test", extra=[(0xFFCE, 300 * b"k")]), 1)
    with pytest.raises(parser.ClientHelloError) as caught:
        parser.server_name(data)
    assert caught.value.reason == "too large"


def test_the_limit_is_the_caller_s(parser):
    data = records_of(build_hello(b"a.test", extra=[(0xFFCE, 600 * b"k")]))
    assert parser.server_name(data) == (0, "a.test")
    with pytest.raises(parser.ClientHelloError) as caught:
        parser.server_name(data, 512)
    assert caught.value.reason == "too large"


@pytest.mark.parametrize("bad", [b"\x00\x00", b"\x00\x05\x00\x00\x03a", b"\x00\x03\x00\x00\x00"])
def test_a_broken_server_name_extension_is_refused(parser, bad):
    hello = build_hello(None, extra=[(0, bad)])
    with pytest.raises(parser.ClientHelloError) as caught:
        parser.server_name(records_of(hello))
    assert caught.value.reason == "malformed"


def test_a_name_that_is_not_ascii_is_refused(parser):
    with pytest.raises(parser.ClientHelloError):
        parser.server_name(records_of(build_hello("é.test".encode())))


def test_one_source_compiled_for_one_engine_and_run_as_python_for_the_other():
    pure = _engine.load("python").clienthello
    assert pure.__name__ == "cysocketserver._pure_clienthello"
    assert pure.__file__.endswith("_clienthello.py")
    if "compiled" not in ENGINES:
        pytest.skip("the compiled engine is not built")
    compiled = _engine.load("compiled").clienthello
    assert type(compiled.__loader__).__name__ == "ExtensionFileLoader"


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

PARSERS = [_engine.load(name).clienthello for name in ENGINES]
SAMPLES = [client_hello(name, maximum) for name, maximum in HELLOS.values()]


def answers_or_refuses(data, limit):
    for parser in PARSERS:
        try:
            wanted, name = parser.server_name(data, limit)
        except parser.ClientHelloError as exc:
            assert exc.reason in ("not TLS", "malformed", "too large")
            continue
        if wanted:
            assert name is None
            assert len(data) < wanted <= limit + 5 * parser.MAX_RECORDS
        else:
            assert name is None or isinstance(name, str)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(4, 20000))
def test_fuzz_any_bytes(data, limit):
    answers_or_refuses(data, limit)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(range(len(SAMPLES))), st.integers(0, 2000), st.binary(max_size=8),
       st.integers(1, 600), st.integers(64, 20000))
def test_fuzz_real_hellos_mutated_and_resplit(which, at, junk, size, limit):
    data = bytearray(resplit(SAMPLES[which], size))
    at = min(at, len(data))
    data[at:at + len(junk)] = junk
    answers_or_refuses(bytes(data), limit)
    answers_or_refuses(bytes(data[:at]), limit)
