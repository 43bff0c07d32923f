"""The PROXY protocol parser.  Mechanism only: which versions to accept, from whom and how long
to wait is ``core.proxyproto``'s business.

``scan(data, accepted)``: how long the header at the start of ``data`` is, 0 while more bytes
are needed to tell; raises ProxyProtocolError as soon as ``data`` cannot begin an acceptable
header.  ``parse(header, accepted)``: the ProxyHeader for exactly one whole header.
``crc32c(data)``: the CRC32c (Castagnoli) of ``data``.

One source for both engines: setup.py compiles this file with Cython into the extension module
``cysocketserver._proxyproto``, with the C types declared in ``_proxyproto.pxd`` beside it
(Cython's "pure Python mode"); the pure engine runs it as Python (``_engine`` says how both
live in one process).  Bytes are read one at a time by index, which the compiled module does
in C, and nothing here needs Cython at run time.
"""
import os
import socket

from ._proxycommon import (ADDRESS_BLOCK, FAMILIES, PP2_TYPE_CRC32C, TYPES, V1, V1_MAX, V2,
                           V2_MAX, V2_SIGNATURE, ProxyHeader, ProxyProtocolError)

__all__ = ["scan", "parse", "crc32c"]

_V1_PREFIX = b"PROXY "
_AF_UNSPEC = socket.AF_UNSPEC
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_SOCK_STREAM = socket.SOCK_STREAM
_inet_ntop = socket.inet_ntop
_inet_pton = socket.inet_pton


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()
_ALL_ONES = 0xFFFFFFFF          # the CRC's initial value and final XOR


def crc32c(data):
    return _crc32c(bytes(data), 0, 0)


def _crc32c(data, zero_from, zero_to):
    """The CRC32c of ``data`` with the bytes from ``zero_from`` to ``zero_to`` read as 0."""
    crc = _ALL_ONES
    for i in range(len(data)):
        byte = 0 if zero_from <= i < zero_to else data[i]
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _ALL_ONES


def scan(data, accepted):
    return _scan(bytes(data), accepted)


def _scan(raw, accepted):
    size = len(raw)
    if size == 0:
        return 0
    if accepted & V2 and raw[0] == 0x0D:
        if not raw.startswith(V2_SIGNATURE[:size]):
            raise ProxyProtocolError("malformed", "no PROXY protocol signature")
        if size < 16:
            return 0
        if raw[12] >> 4 != 2:
            raise ProxyProtocolError("malformed", "unknown v2 version %d" % (raw[12] >> 4))
        total = 16 + (raw[14] << 8 | raw[15])
        if total > V2_MAX:
            raise ProxyProtocolError("oversized", "v2 header of %d bytes" % total)
        return total
    if accepted & V1 and raw[0] == 0x50:
        if not raw.startswith(_V1_PREFIX[:size]):
            raise ProxyProtocolError("malformed", "no PROXY protocol signature")
        end = raw.find(b"\n", 0, V1_MAX)
        if end >= 0:
            if end == 0 or raw[end - 1] != 0x0D:
                raise ProxyProtocolError("malformed", "v1 line ends without CRLF")
            return end + 1
        if size >= V1_MAX:
            raise ProxyProtocolError("oversized", "v1 line longer than %d bytes" % V1_MAX)
        return 0
    raise ProxyProtocolError("malformed", "no PROXY protocol signature")


def parse(header, accepted):
    raw = bytes(header)
    length = _scan(raw, accepted)
    if length == 0 or length > len(raw):
        raise ProxyProtocolError("truncated", "incomplete header")
    if length != len(raw):
        raise ProxyProtocolError("malformed", "bytes after the header")
    if raw[0] == 0x0D:
        return _parse_v2(raw)
    return _parse_v1(raw)


def _port(text):
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == 0x30):
        raise ProxyProtocolError("malformed", "bad v1 port")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError("malformed", "bad v1 port")
    return port


def _host(family, text):
    try:
        return _inet_ntop(family, _inet_pton(family, text.decode("ascii")))
    except (OSError, ValueError):
        raise ProxyProtocolError("malformed", "bad v1 address") from None


def _parse_v1(header):
    fields = header[:len(header) - 2].split(b" ")
    protocol = fields[1]
    if protocol == b"UNKNOWN":
        # Whatever follows UNKNOWN is to be ignored: the real peer stands.
        return ProxyHeader(1, "PROXY", _AF_UNSPEC, 0, None, None, (), len(header))
    if protocol == b"TCP4":
        family = _AF_INET
    elif protocol == b"TCP6":
        family = _AF_INET6
    else:
        raise ProxyProtocolError("malformed", "unknown v1 protocol")
    if len(fields) != 6:
        raise ProxyProtocolError("malformed", "v1 line has %d fields, not 6" % len(fields))
    source_host = _host(family, fields[2])
    destination_host = _host(family, fields[3])
    source_port = _port(fields[4])
    destination_port = _port(fields[5])
    if family == _AF_INET:
        source = (source_host, source_port)
        destination = (destination_host, destination_port)
    else:
        source = (source_host, source_port, 0, 0)
        destination = (destination_host, destination_port, 0, 0)
    return ProxyHeader(1, "PROXY", family, _SOCK_STREAM, source, destination, (), len(header))


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
    family_code = header[13] >> 4
    type_code = header[13] & 0x0F
    if family_code not in FAMILIES or type_code not in TYPES:
        raise ProxyProtocolError("malformed", "unknown v2 family/protocol 0x%02x" % header[13])
    block = ADDRESS_BLOCK[family_code]
    end = len(header)
    if end - 16 < block:
        raise ProxyProtocolError("malformed", "v2 address block too short")
    tlvs = []
    checksums = []
    position = 16 + block
    while position < end:
        if end - position < 3:
            raise ProxyProtocolError("malformed", "truncated v2 TLV")
        kind = header[position]
        size = header[position + 1] << 8 | header[position + 2]
        start = position + 3
        if end - start < size:
            raise ProxyProtocolError("malformed", "truncated v2 TLV")
        if kind == PP2_TYPE_CRC32C:
            if size != 4:
                raise ProxyProtocolError("malformed", "CRC32c TLV of %d bytes" % size)
            checksums.append(start)
        tlvs.append((kind, header[start:start + size]))
        position = start + size
    for start in checksums:
        # The checksum is computed with its own four bytes as zeros.
        sent = 0
        for at in range(start, start + 4):
            sent = sent << 8 | header[at]
        if _crc32c(header, start, start + 4) != sent:
            raise ProxyProtocolError("checksum", "CRC32c mismatch")
    family = FAMILIES[family_code]
    source = destination = None
    if command == 1 and type_code != 0:
        if family_code == 1:
            source = (_inet_ntop(family, header[16:20]), header[24] << 8 | header[25])
            destination = (_inet_ntop(family, header[20:24]), header[26] << 8 | header[27])
        elif family_code == 2:
            source = (_inet_ntop(family, header[16:32]), header[48] << 8 | header[49], 0, 0)
            destination = (_inet_ntop(family, header[32:48]), header[50] << 8 | header[51], 0, 0)
        elif family_code == 3:
            source = _unix_path(header[16:124])
            destination = _unix_path(header[124:232])
    return ProxyHeader(2, "PROXY" if command == 1 else "LOCAL", family, TYPES[type_code], source,
                       destination, tuple(tlvs), end)
