# Types of the concurrency mix-ins, shaped as the stdlib's socketserver mix-ins.
import sys

from .servers import _RequestType, _RetAddress

__all__ = ["ThreadingMixIn", "ThreadPoolMixIn"]
if sys.platform != "win32":
    __all__ += ["ForkingMixIn"]

    class ForkingMixIn:
        timeout: float | None
        active_children: set[int] | None
        max_children: int
        block_on_close: bool
        def collect_children(self, *, blocking: bool = False) -> None: ...
        def handle_timeout(self) -> None: ...
        def service_actions(self) -> None: ...
        def process_request(self, request: _RequestType, client_address: _RetAddress) -> None: ...
        def server_close(self) -> None: ...

class ThreadingMixIn:
    daemon_threads: bool
    block_on_close: bool
    def process_request_thread(self, request: _RequestType, client_address: _RetAddress) -> None: ...
    def process_request(self, request: _RequestType, client_address: _RetAddress) -> None: ...
    def server_close(self) -> None: ...

class ThreadPoolMixIn(ThreadingMixIn):
    max_threads: int
    pool_idle_timeout: float
