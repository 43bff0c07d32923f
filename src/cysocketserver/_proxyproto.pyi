# The PROXY protocol parser: one source (_proxyproto.py), compiled into this module where the
# extensions are built, and run as Python by the pure engine (as cysocketserver._pure_proxyproto).

from ._proxycommon import ProxyHeader

__all__ = ["scan", "parse", "crc32c"]

def scan(data: bytes, accepted: int) -> int: ...
def parse(header: bytes, accepted: int) -> ProxyHeader: ...
def crc32c(data: bytes) -> int: ...
