# The compiled relay (ext/cysocketserver/_relay.pyx); _pure_relay.py has the same names.
from typing import Any

from ._hub import Hub

__all__ = ["BUFFER_SIZE", "SPLICE_ALWAYS", "SPLICE_AUTO", "SPLICE_NEVER", "TURN_BYTES",
           "relay_in_thread", "relay_on_hub"]

BUFFER_SIZE: int
TURN_BYTES: int
SPLICE_NEVER: int
SPLICE_AUTO: int
SPLICE_ALWAYS: int

def relay_in_thread(a: Any, b: Any, idle_timeout: float | None = None,
                    splice_mode: int = 1) -> tuple[int, int]: ...
def relay_on_hub(hub: Hub, a: Any, b: Any, idle_timeout: float | None = None,
                 splice_mode: int = 1) -> tuple[int, int]: ...
