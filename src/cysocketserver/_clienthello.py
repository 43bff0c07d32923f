"""The server name (SNI) in a TLS ClientHello, read from the first bytes of a connection
without taking part in the handshake -- what a proxy that passes TLS through needs to route it.

``server_name(data, limit=MAX_HANDSHAKE)`` looks at the bytes received so far and answers
``(wanted, name)``:

- ``wanted > 0``: not enough yet; ``wanted`` is how many bytes (from the start) to have before
  asking again, never more than the ClientHello can take (a record at a time, so a caller that
  peeks ``wanted`` bytes never reads past it);
- ``wanted == 0``: the ClientHello is whole; ``name`` is its server name (str), or None when it
  names none.

Anything else raises ``ClientHelloError``, whose ``reason`` is ``NOT_TLS`` (the first bytes are
not a TLS handshake record), ``MALFORMED``, or ``TOO_LARGE`` (a handshake over ``limit`` bytes,
or spread over more than ``MAX_RECORDS`` records).  The ClientHello may be split over several
TLS records (post-quantum key shares make it larger than one packet) and arrive a byte at a
time.

One source for both engines, as the PROXY protocol parser: setup.py compiles it with the C types
of ``_clienthello.pxd``; the pure engine runs it as Python under another name (``_engine``).
"""

__all__ = ["server_name", "ClientHelloError", "MAX_HANDSHAKE", "MAX_RECORDS", "NOT_TLS",
           "MALFORMED", "TOO_LARGE"]

# A ClientHello with a post-quantum key share is about 1.8 KB; 16 KiB leaves room for many
# extensions while bounding what one connection makes the proxy hold.
MAX_HANDSHAKE = 16384
# Records the handshake may be split over: a sender that cuts it finer is not a TLS client.
MAX_RECORDS = 64

NOT_TLS = "not TLS"
MALFORMED = "malformed"
TOO_LARGE = "too large"

_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4
_CONTENT_HANDSHAKE = 22
_CLIENT_HELLO = 1
_MAX_FRAGMENT = 16384             # the most a plaintext TLS record may carry
_EXTENSION_SERVER_NAME = 0
_HOST_NAME = 0


class ClientHelloError(ValueError):
    """The bytes cannot start a TLS connection this parser accepts; ``reason`` says why."""

    @property
    def reason(self):
        return self.args[0]


def server_name(data, limit=MAX_HANDSHAKE):
    if limit < _HANDSHAKE_HEADER:
        raise ValueError("limit must be at least %d bytes" % _HANDSHAKE_HEADER)
    return _server_name(bytes(data), limit)


def _server_name(raw, limit):
    size = len(raw)
    position = 0
    records = 0
    handshake = b""
    total = -1                  # the handshake's length with its header, once known
    while True:
        if size - position < _RECORD_HEADER:
            _check_record(raw, position, size)
            return position + _RECORD_HEADER, None
        _check_record(raw, position, size)
        length = raw[position + 3] << 8 | raw[position + 4]
        if length == 0 or length > _MAX_FRAGMENT:
            raise ClientHelloError(MALFORMED, "handshake record of %d bytes" % length)
        records += 1
        if records > MAX_RECORDS:
            raise ClientHelloError(TOO_LARGE, "ClientHello in more than %d records"
                                   % MAX_RECORDS)
        before = len(handshake)
        start = position + _RECORD_HEADER
        # What this record can still give the ClientHello: the rest of it, never past the
        # handshake's length (or the limit, while that is not known yet).
        useful = min(length, (total if total >= 0 else limit) - before)
        handshake += raw[start:min(start + useful, size)]
        if total < 0 and len(handshake) >= 1 and handshake[0] != _CLIENT_HELLO:
            raise ClientHelloError(MALFORMED, "handshake type %d, not ClientHello"
                                   % handshake[0])
        if total < 0 and len(handshake) >= _HANDSHAKE_HEADER:
            total = _HANDSHAKE_HEADER + _length3(handshake, 1)
            if total > limit:
                raise ClientHelloError(TOO_LARGE, "ClientHello of %d bytes (at most %d)"
                                       % (total, limit))
            useful = min(length, total - before)
        if total >= 0 and len(handshake) >= total:
            return 0, _parse(handshake, total)
        if start + length > size:
            return start + useful, None
        position = start + length


def _check_record(raw, position, size):
    """Refuse a record (whole or begun) that is no TLS handshake record."""
    if size > position and raw[position] != _CONTENT_HANDSHAKE:
        raise ClientHelloError(NOT_TLS if position == 0 else MALFORMED,
                               "record type %d before the ClientHello ended" % raw[position])
    if size - position >= 2 and raw[position + 1] != 3:
        raise ClientHelloError(NOT_TLS if position == 0 else MALFORMED,
                               "record version %d.x" % raw[position + 1])


def _length3(raw, at):
    return raw[at] << 16 | raw[at + 1] << 8 | raw[at + 2]


def _parse(hello, end):
    """The server name in the whole ClientHello ``hello[:end]`` (header included)."""
    at = _HANDSHAKE_HEADER + 2 + 32             # the legacy version and the random
    if at >= end:
        raise ClientHelloError(MALFORMED, "ClientHello too short")
    at += 1 + hello[at]                         # the session id
    if at + 2 > end:
        raise ClientHelloError(MALFORMED, "ClientHello too short")
    at += 2 + (hello[at] << 8 | hello[at + 1])  # the cipher suites
    if at + 1 > end:
        raise ClientHelloError(MALFORMED, "ClientHello too short")
    at += 1 + hello[at]                         # the compression methods
    if at > end:
        raise ClientHelloError(MALFORMED, "ClientHello too short")
    if at == end:
        return None                             # no extensions at all
    if at + 2 > end:
        raise ClientHelloError(MALFORMED, "truncated extensions")
    stop = at + 2 + (hello[at] << 8 | hello[at + 1])
    if stop != end:
        raise ClientHelloError(MALFORMED, "extensions do not fill the ClientHello")
    at += 2
    while at < stop:
        if at + 4 > stop:
            raise ClientHelloError(MALFORMED, "truncated extension")
        kind = hello[at] << 8 | hello[at + 1]
        size = hello[at + 2] << 8 | hello[at + 3]
        at += 4
        if at + size > stop:
            raise ClientHelloError(MALFORMED, "truncated extension")
        if kind == _EXTENSION_SERVER_NAME:
            return _host_name(hello, at, at + size)
        at += size
    return None


def _host_name(hello, at, stop):
    """The host_name entry of a server_name extension's body ``hello[at:stop]``."""
    if at + 3 > stop or at + 2 + (hello[at] << 8 | hello[at + 1]) != stop:
        raise ClientHelloError(MALFORMED, "bad server_name list")
    at += 2
    while at < stop:
        if at + 3 > stop:
            raise ClientHelloError(MALFORMED, "bad server_name entry")
        kind = hello[at]
        size = hello[at + 1] << 8 | hello[at + 2]
        at += 3
        if size == 0 or at + size > stop:
            raise ClientHelloError(MALFORMED, "bad server_name entry")
        if kind == _HOST_NAME:
            try:
                return hello[at:at + size].decode("ascii")
            except UnicodeDecodeError:
                raise ClientHelloError(MALFORMED, "server name is not ASCII") from None
        at += size
    return None
