# Socket activation (sd_listen_fds(3)).
from socket import socket
from typing import Literal, overload

__all__ = ["listen_fds", "LISTEN_FDS_START"]

LISTEN_FDS_START: int

@overload
def listen_fds(unset_environment: bool = True, *, with_names: Literal[False] = False) -> list[socket]: ...
@overload
def listen_fds(unset_environment: bool = True, *, with_names: Literal[True]) -> list[tuple[str, socket]]: ...
