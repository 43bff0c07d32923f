"""The PROXY protocol parser in Python: the twin of the compiled ``_proxyproto``, same names,
same results, same errors.  Mechanism only: which versions to accept, from whom and how long
to wait is ``core.proxyproto``'s business.

``scan(data, accepted)``: how long the header at the start of ``data`` is, 0 while more bytes
are needed to tell; raises ProxyProtocolError as soon as ``data`` cannot begin an acceptable
header.  ``parse(header, accepted)``: the ProxyHeader for exactly one whole header.
``crc32c(data)``: the CRC32c (Castagnoli) of ``data``.
"""
import os
import socket

from ._proxycommon import (ADDRESS_BLOCK, FAMILIES, PP2_TYPE_CRC32C, TYPES, V1, V1_MAX, V2,
                           V2_MAX, V2_SIGNATURE, ProxyHeader, ProxyProtocolError)

__all__ = ["scan", "parse", "crc32c"]

_V1_PREFIX = b"PROXY "


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def scan(data, accepted):
    data = bytes(data)
    size = len(data)
    if size == 0:
        return 0
    if accepted & V2 and data[:12] == V2_SIGNATURE[:size]:
        if size < 16:
            return 0
        if data[12] >> 4 != 2:
            raise ProxyProtocolError("malformed", "unknown v2 version %d" % (data[12] >> 4))
        total = 16 + int.from_bytes(data[14:16], "big")
        if total > V2_MAX:
            raise ProxyProtocolError("oversized", "v2 header of %d bytes" % total)
        return total
    if accepted & V1 and data[:6] == _V1_PREFIX[:size]:
        end = data.find(b"\n", 0, V1_MAX)
        if end >= 0:
            if end == 0 or data[end - 1] != 0x0D:
                raise ProxyProtocolError("malformed", "v1 line ends without CRLF")
            return end + 1
        if size >= V1_MAX:
            raise ProxyProtocolError("oversized", "v1 line longer than %d bytes" % V1_MAX)
        return 0
    raise ProxyProtocolError("malformed", "no PROXY protocol signature")


def parse(header, accepted):
    header = bytes(header)
    length = scan(header, accepted)
    if length == 0 or length > len(header):
        raise ProxyProtocolError("truncated", "incomplete header")
    if length != len(header):
        raise ProxyProtocolError("malformed", "bytes after the header")
    if header[0] == 0x0D:
        return _parse_v2(header)
    return _parse_v1(header)


def _port(text):
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == 0x30):
        raise ProxyProtocolError("malformed", "bad v1 port")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError("malformed", "bad v1 port")
    return port


def _host(family, text):
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text.decode("ascii")))
    except (OSError, ValueError):
        raise ProxyProtocolError("malformed", "bad v1 address") from None


def _parse_v1(header):
    fields = header[:-2].split(b" ")
    protocol = fields[1]
    if protocol == b"UNKNOWN":
        # Whatever follows UNKNOWN is to be ignored: the real peer stands.
        return ProxyHeader(1, "PROXY", socket.AF_UNSPEC, 0, None, None, (), len(header))
    if protocol == b"TCP4":
        family = socket.AF_INET
    elif protocol == b"TCP6":
        family = socket.AF_INET6
    else:
        raise ProxyProtocolError("malformed", "unknown v1 protocol")
    if len(fields) != 6:
        raise ProxyProtocolError("malformed", "v1 line has %d fields, not 6" % len(fields))
    source_host = _host(family, fields[2])
    destination_host = _host(family, fields[3])
    source_port = _port(fields[4])
    destination_port = _port(fields[5])
    if family == socket.AF_INET:
        source = (source_host, source_port)
        destination = (destination_host, destination_port)
    else:
        source = (source_host, source_port, 0, 0)
        destination = (destination_host, destination_port, 0, 0)
    return ProxyHeader(1, "PROXY", family, socket.SOCK_STREAM, source, destination, (),
                       len(header))


def _unix_path(raw):
    if not raw.strip(b"\0"):
        return ""
    if raw[0] == 0:
        return raw.rstrip(b"\0")           # an abstract name, as the socket module gives it
    return os.fsdecode(raw.split(b"\0", 1)[0])


def _parse_v2(header):
    command = header[12] & 0x0F
    if command > 1:
        raise ProxyProtocolError("malformed", "unknown v2 command %d" % command)
    family_code, type_code = header[13] >> 4, header[13] & 0x0F
    if family_code not in FAMILIES or type_code not in TYPES:
        raise ProxyProtocolError("malformed", "unknown v2 family/protocol 0x%02x" % header[13])
    block = ADDRESS_BLOCK[family_code]
    if len(header) - 16 < block:
        raise ProxyProtocolError("malformed", "v2 address block too short")
    tlvs = []
    checksums = []
    position = 16 + block
    end = len(header)
    while position < end:
        if end - position < 3:
            raise ProxyProtocolError("malformed", "truncated v2 TLV")
        kind = header[position]
        size = (header[position + 1] << 8) | header[position + 2]
        start = position + 3
        if end - start < size:
            raise ProxyProtocolError("malformed", "truncated v2 TLV")
        value = header[start:start + size]
        if kind == PP2_TYPE_CRC32C:
            if size != 4:
                raise ProxyProtocolError("malformed", "CRC32c TLV of %d bytes" % size)
            checksums.append(start)
        tlvs.append((kind, value))
        position = start + size
    for start in checksums:
        zeroed = header[:start] + b"\0\0\0\0" + header[start + 4:]
        if crc32c(zeroed) != int.from_bytes(header[start:start + 4], "big"):
            raise ProxyProtocolError("checksum", "CRC32c mismatch")
    family, kind = FAMILIES[family_code], TYPES[type_code]
    source = destination = None
    if command == 1 and type_code != 0:
        if family_code == 1:
            source = (socket.inet_ntop(family, header[16:20]), int.from_bytes(header[24:26], "big"))
            destination = (socket.inet_ntop(family, header[20:24]),
                           int.from_bytes(header[26:28], "big"))
        elif family_code == 2:
            source = (socket.inet_ntop(family, header[16:32]),
                      int.from_bytes(header[48:50], "big"), 0, 0)
            destination = (socket.inet_ntop(family, header[32:48]),
                           int.from_bytes(header[50:52], "big"), 0, 0)
        elif family_code == 3:
            source = _unix_path(header[16:124])
            destination = _unix_path(header[124:232])
    return ProxyHeader(2, "PROXY" if command == 1 else "LOCAL", family, kind, source,
                       destination, tuple(tlvs), len(header))
