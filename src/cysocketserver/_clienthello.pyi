# The ClientHello (SNI) parser: one source (_clienthello.py), compiled into this module where
# the extensions are built, and run as Python by the pure engine (as
# cysocketserver._pure_clienthello).

__all__ = ["server_name", "ClientHelloError", "MAX_HANDSHAKE", "MAX_RECORDS", "NOT_TLS",
           "MALFORMED", "TOO_LARGE"]

MAX_HANDSHAKE: int
MAX_RECORDS: int
NOT_TLS: str
MALFORMED: str
TOO_LARGE: str

class ClientHelloError(ValueError):
    @property
    def reason(self) -> str: ...

def server_name(data: bytes | bytearray | memoryview, limit: int = ...) -> tuple[int, str | None]: ...
