"""The PROXY protocol header a client (a proxy) sends first: the builder beside the parsers.

``build(version, source, destination)``: the bytes of one header (HAProxy's
proxy-protocol.txt) for a TCP connection relayed from ``source`` to ``destination``, each an
``(ip, port)`` pair (a longer IPv6 tuple is accepted; its flow and scope are not sent).
``version`` is ``V1`` (the text line) or ``V2`` (the binary block, without TLVs).  The
addresses must be IP literals: a header names addresses, never host names.  Where one is IPv4
and the other IPv6, the IPv4 one is sent as IPv4-mapped IPv6, so both share a family as the
protocol requires.  Bad input raises TypeError or ValueError, before anything is sent.
"""
import socket

from ._proxycommon import V1, V1_MAX, V2, V2_SIGNATURE

__all__ = ["build"]

# Version 2's thirteenth byte: the version (2) in the high nibble, the command PROXY (1) low.
_V2_PROXY_COMMAND = 0x21
# Its fourteenth byte, the family (high nibble) and transport (low: 1 is STREAM).
_V2_TCP = {socket.AF_INET: 0x11, socket.AF_INET6: 0x21}
_V1_TCP = {socket.AF_INET: "TCP4", socket.AF_INET6: "TCP6"}


def _ip_and_port(address, role):
    """(family, packed address, port) of one ``(ip, port)`` pair."""
    if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
        raise TypeError("the %s address must be an (ip, port) tuple, not %r" % (role, address))
    host, port = address[0], address[1]
    if not isinstance(host, str):
        raise TypeError("the %s address's host must be a str IP address, not %s"
                        % (role, type(host).__name__))
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError("the %s address's port must be an int, not %s"
                        % (role, type(port).__name__))
    if not 0 <= port <= 0xFFFF:
        raise ValueError("the %s address's port %d is not in 0..65535" % (role, port))
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return family, socket.inet_pton(family, host), port
        except OSError:
            pass
    raise ValueError("the %s address %r is not an IPv4 or IPv6 address (a PROXY header names "
                     "addresses, not host names)" % (role, host))


def _as_ipv6(family, packed):
    if family == socket.AF_INET6:
        return packed
    return b"\0" * 10 + b"\xff\xff" + packed


def _text(family, packed):
    """An address as v1 writes it: IPv4 dotted, IPv6 in hexadecimal groups only (inet_ntop
    writes the last 32 bits of an IPv4-mapped address as a dotted quad, which the
    specification's IPv6 form does not have)."""
    text = socket.inet_ntop(family, packed)
    if family == socket.AF_INET6 and "." in text:
        text = "%s:%x:%x" % (text.rsplit(":", 1)[0], int.from_bytes(packed[12:14], "big"),
                             int.from_bytes(packed[14:16], "big"))
    return text


def build(version, source, destination):
    """The header's bytes: see the module's documentation."""
    src_family, src, src_port = _ip_and_port(source, "client")
    dst_family, dst, dst_port = _ip_and_port(destination, "server")
    family = src_family
    if src_family != dst_family:
        family = socket.AF_INET6
        src, dst = _as_ipv6(src_family, src), _as_ipv6(dst_family, dst)
    if version == V1:
        line = "PROXY %s %s %s %d %d\r\n" % (_V1_TCP[family], _text(family, src),
                                              _text(family, dst), src_port, dst_port)
        header = line.encode("ascii")
        assert len(header) <= V1_MAX
        return header
    if version == V2:
        block = src + dst + src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big")
        return (V2_SIGNATURE + bytes((_V2_PROXY_COMMAND, _V2_TCP[family]))
                + len(block).to_bytes(2, "big") + block)
    raise ValueError("unknown PROXY protocol version %r" % (version,))
