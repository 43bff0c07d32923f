"""What the PROXY protocol parser (``_proxyproto``, compiled or run as Python) shares with the
policy (``core.proxyproto``): the error it raises, the record it returns and the protocol's
constants (HAProxy's proxy-protocol.txt).

The two classes are public: users import them from ``cysocketserver.proxyprotocol``, which
re-exports them, and they carry that module's name.  They are defined here, in the engine
layer, so that the parser imports nothing from the layers above it."""
import socket

__all__ = [
    "ProxyProtocolError", "ProxyHeader", "V1", "V2", "ANY", "V1_MAX", "V2_MAX",
    "V2_SIGNATURE", "PP2_TYPE_CRC32C",
]

# Which versions a parser accepts (bit flags).
V1 = 1
V2 = 2
ANY = V1 | V2

# A v1 line, CRLF included, is at most 107 bytes (the spec's own bound).
V1_MAX = 107
# The v2 header (16 fixed bytes plus the announced length) this package accepts: room for the
# addresses of every family and a few hundred bytes of TLVs; a longer one is "oversized".
V2_MAX = 4096

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPE_CRC32C = 0x03


class ProxyProtocolError(ValueError):
    """A header that cannot be accepted.  ``cause`` says why, in one word: "malformed",
    "oversized" or "checksum" from the parser; the server adds "truncated", "slow" and
    "untrusted"."""

    __module__ = "cysocketserver.proxyprotocol"      # where users import it from

    def __init__(self, cause, detail):
        super().__init__("%s: %s" % (cause, detail))
        self.cause = cause
        self.detail = detail


class ProxyHeader:
    """One received PROXY protocol header.

    ``version`` (1 or 2); ``command`` ("PROXY" or "LOCAL"); ``family`` (socket.AF_INET,
    AF_INET6, AF_UNIX or AF_UNSPEC); ``type`` (socket.SOCK_STREAM, SOCK_DGRAM or 0);
    ``source`` and ``destination``: addresses in the shape the socket module gives for the
    family ((host, port), (host, port, 0, 0), a path), or None where the header carries none
    (LOCAL, UNSPEC, v1 UNKNOWN); ``tlvs``: the v2 TLVs as a tuple of (type, value bytes) in
    the order sent (empty for v1); ``length``: the header's size in bytes.
    """

    __module__ = "cysocketserver.proxyprotocol"      # where users import it from
    __slots__ = ("version", "command", "family", "type", "source", "destination", "tlvs", "length")

    def __init__(self, version, command, family, type, source, destination, tlvs, length):
        self.version = version
        self.command = command
        self.family = family
        self.type = type
        self.source = source
        self.destination = destination
        self.tlvs = tlvs
        self.length = length

    @property
    def proxied(self):
        """Whether the header names the original client (otherwise the real peer stands)."""
        return self.source is not None

    def tlv(self, kind, default=None):
        """The value of the first TLV of type ``kind``, or ``default``."""
        for tlv_type, value in self.tlvs:
            if tlv_type == kind:
                return value
        return default

    def _key(self):
        return (self.version, self.command, self.family, self.type, self.source,
                self.destination, self.tlvs, self.length)

    def __eq__(self, other):
        if not isinstance(other, ProxyHeader):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return "<ProxyHeader v%d %s %r -> %r>" % (self.version, self.command, self.source,
                                                  self.destination)


FAMILIES = {0: socket.AF_UNSPEC, 1: socket.AF_INET, 2: socket.AF_INET6,
            3: getattr(socket, "AF_UNIX", 1)}
TYPES = {0: 0, 1: socket.SOCK_STREAM, 2: socket.SOCK_DGRAM}
# Bytes of the address block for each family: two addresses and, for IP, two ports.
ADDRESS_BLOCK = {0: 0, 1: 12, 2: 36, 3: 216}
