"""The PROXY protocol as the servers receive it (HAProxy's proxy-protocol.txt, versions 1 and 2).

``ProxyHeader``: one received header, as ``server.proxy_header(request)`` returns it (None where
the connection had none): ``version``, ``command``, ``family``, ``type``, ``source``,
``destination``, ``tlvs``, ``length``, ``proxied`` and ``tlv(kind)``.
``ProxyProtocolError``: a header refused; its ``cause`` ("malformed", "oversized", "checksum",
"truncated", "slow", "untrusted") is the key it is counted under in
``server.proxy_protocol_refused``.

Both are defined with the parser, in the engine, and only re-exported here.
"""
from ._proxycommon import ProxyHeader, ProxyProtocolError

__all__ = ["ProxyHeader", "ProxyProtocolError"]
