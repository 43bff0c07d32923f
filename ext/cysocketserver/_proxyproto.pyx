# cython: language_level=3, boundscheck=False, wraparound=False
"""The PROXY protocol parser, compiled: the header is scanned and checksummed over the bytes in
C.  Same names, results and errors as its twin ``_pure_proxyproto``, which documents them."""
import os
import socket

from cysocketserver._proxycommon import (ADDRESS_BLOCK, FAMILIES, PP2_TYPE_CRC32C, TYPES, V1,
                                         V1_MAX, V2, V2_MAX, V2_SIGNATURE, ProxyHeader,
                                         ProxyProtocolError)

from libc.stdint cimport uint32_t

__all__ = ["scan", "parse", "crc32c"]

cdef uint32_t _table[256]


cdef void _fill_table():
    cdef uint32_t crc
    cdef int byte, bit
    for byte in range(256):
        crc = byte
        for bit in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0x82F63B78u
            else:
                crc = crc >> 1
        _table[byte] = crc


_fill_table()

cdef const unsigned char *_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
cdef const unsigned char *_V1P = b"PROXY "
cdef Py_ssize_t _V1_MAX = V1_MAX
cdef Py_ssize_t _V2_MAX = V2_MAX
cdef int _AF_INET = socket.AF_INET
cdef int _AF_INET6 = socket.AF_INET6
cdef int _AF_UNSPEC = socket.AF_UNSPEC
cdef int _SOCK_STREAM = socket.SOCK_STREAM
_inet_ntop = socket.inet_ntop
_inet_pton = socket.inet_pton


cdef uint32_t _crc(const unsigned char[:] data, Py_ssize_t zero_from, Py_ssize_t zero_to) noexcept:
    cdef uint32_t crc = 0xFFFFFFFFu
    cdef Py_ssize_t i
    cdef unsigned char byte
    for i in range(data.shape[0]):
        byte = 0 if zero_from <= i < zero_to else data[i]
        crc = _table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFu


def crc32c(data):
    cdef bytes raw = bytes(data)
    return _crc(raw, 0, 0)


cdef Py_ssize_t _scan(const unsigned char[:] data, int accepted) except -1:
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t i, limit, total
    if size == 0:
        return 0
    if accepted & V2 and data[0] == 0x0D:
        limit = size if size < 12 else 12
        for i in range(limit):
            if data[i] != _SIG[i]:
                raise ProxyProtocolError("malformed", "no PROXY protocol signature")
        if size < 16:
            return 0
        if data[12] >> 4 != 2:
            raise ProxyProtocolError("malformed", "unknown v2 version %d" % (data[12] >> 4))
        total = 16 + ((<Py_ssize_t>data[14] << 8) | data[15])
        if total > _V2_MAX:
            raise ProxyProtocolError("oversized", "v2 header of %d bytes" % total)
        return total
    if accepted & V1 and data[0] == 0x50:
        limit = size if size < 6 else 6
        for i in range(limit):
            if data[i] != _V1P[i]:
                raise ProxyProtocolError("malformed", "no PROXY protocol signature")
        limit = size if size < _V1_MAX else _V1_MAX
        for i in range(limit):
            if data[i] == 0x0A:
                if i == 0 or data[i - 1] != 0x0D:
                    raise ProxyProtocolError("malformed", "v1 line ends without CRLF")
                return i + 1
        if size >= _V1_MAX:
            raise ProxyProtocolError("oversized", "v1 line longer than %d bytes" % _V1_MAX)
        return 0
    raise ProxyProtocolError("malformed", "no PROXY protocol signature")


def scan(data, int accepted):
    cdef bytes raw = bytes(data)
    return _scan(raw, accepted)


def parse(header, int accepted):
    cdef bytes raw = bytes(header)
    cdef Py_ssize_t length = _scan(raw, accepted)
    if length == 0 or length > len(raw):
        raise ProxyProtocolError("truncated", "incomplete header")
    if length != len(raw):
        raise ProxyProtocolError("malformed", "bytes after the header")
    if raw[0] == 0x0D:
        return _parse_v2(raw)
    return _parse_v1(raw)


cdef int _port(bytes text) except -1:
    cdef Py_ssize_t size = len(text)
    cdef const unsigned char *p = text
    cdef Py_ssize_t i
    cdef int port = 0
    if size == 0 or size > 5 or (size > 1 and p[0] == 0x30):
        raise ProxyProtocolError("malformed", "bad v1 port")
    for i in range(size):
        if not 0x30 <= p[i] <= 0x39:
            raise ProxyProtocolError("malformed", "bad v1 port")
        port = port * 10 + (p[i] - 0x30)
    if port > 65535:
        raise ProxyProtocolError("malformed", "bad v1 port")
    return port


cdef str _host(int family, bytes text):
    try:
        return _inet_ntop(family, _inet_pton(family, text.decode("ascii")))
    except (OSError, ValueError):
        raise ProxyProtocolError("malformed", "bad v1 address") from None


cdef object _parse_v1(bytes header):
    cdef list fields = header[:len(header) - 2].split(b" ")
    cdef bytes protocol = fields[1]
    cdef int family
    if protocol == b"UNKNOWN":
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
    return ProxyHeader(1, "PROXY", socket.AddressFamily(family), socket.SOCK_STREAM, source,
                       destination, (), len(header))


cdef object _unix_path(bytes raw):
    if not raw.strip(b"\0"):
        return ""
    if raw[0] == 0:
        return raw.rstrip(b"\0")
    return os.fsdecode(raw.split(b"\0", 1)[0])


cdef inline int _u16(const unsigned char *p, Py_ssize_t at) noexcept:
    return (p[at] << 8) | p[at + 1]


cdef object _parse_v2(bytes header):
    cdef const unsigned char *p = header
    cdef Py_ssize_t end = len(header)
    cdef int command = p[12] & 0x0F
    cdef int family_code = p[13] >> 4
    cdef int type_code = p[13] & 0x0F
    cdef Py_ssize_t block, position, start, size
    cdef int kind
    cdef list tlvs = []
    cdef list checksums = []
    if command > 1:
        raise ProxyProtocolError("malformed", "unknown v2 command %d" % command)
    if family_code > 3 or type_code > 2:
        raise ProxyProtocolError("malformed", "unknown v2 family/protocol 0x%02x" % p[13])
    block = ADDRESS_BLOCK[family_code]
    if end - 16 < block:
        raise ProxyProtocolError("malformed", "v2 address block too short")
    position = 16 + block
    while position < end:
        if end - position < 3:
            raise ProxyProtocolError("malformed", "truncated v2 TLV")
        kind = p[position]
        size = _u16(p, position + 1)
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
        if _crc(header, start, start + 4) != (<uint32_t>_u16(p, start) << 16 | <uint32_t>_u16(p, start + 2)):
            raise ProxyProtocolError("checksum", "CRC32c mismatch")
    family, socktype = FAMILIES[family_code], TYPES[type_code]
    source = destination = None
    if command == 1 and type_code != 0:
        if family_code == 1:
            source = (_inet_ntop(family, header[16:20]), _u16(p, 24))
            destination = (_inet_ntop(family, header[20:24]), _u16(p, 26))
        elif family_code == 2:
            source = (_inet_ntop(family, header[16:32]), _u16(p, 48), 0, 0)
            destination = (_inet_ntop(family, header[32:48]), _u16(p, 50), 0, 0)
        elif family_code == 3:
            source = _unix_path(header[16:124])
            destination = _unix_path(header[124:232])
    return ProxyHeader(2, "PROXY" if command == 1 else "LOCAL", family, socktype, source,
                       destination, tuple(tlvs), end)
