"""Picks the engine behind the public classes: the compiled modules, or their pure-Python twins.

The seam between the public classes and the engine is exactly these names:

``ServeLoop()``
    One per server.  ``serve_forever(server, poll_interval)``, ``handle_request(server)``,
    ``shutdown()`` (ask the running loop to stop and wait until it has), ``close()``.
    The loop calls the server's documented hooks; it never reaches into private state.
``SocketReader(sock, buffer_size)``
    What ``sock.makefile('rb', buffer_size)`` returns, byte for byte and error for error.
``SocketWriter(sock)``
    The unbuffered ``wfile`` of StreamRequestHandler: ``write()`` sends every byte.
``Hub()``
    The greenlet servers' event loop, one per thread (see ``_pure_hub`` for its interface).

Set ``CYSOCKETSERVER_NO_EXTENSIONS=1`` to force the pure-Python engine.
"""
import os

__all__ = ["IMPLEMENTATION", "Hub", "ServeLoop", "SocketReader", "SocketWriter"]


def _want_extensions():
    return not os.environ.get("CYSOCKETSERVER_NO_EXTENSIONS")


if _want_extensions():
    try:
        from ._hub import Hub
        from ._loop import ServeLoop
        from ._streams import SocketReader, SocketWriter
    except ImportError:
        # No compiler where this was installed (or PyPy): the same seam in Python.
        from ._pure_hub import Hub
        from ._pure_loop import ServeLoop
        from ._pure_streams import SocketReader, SocketWriter

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "compiled"
else:
    from ._pure_hub import Hub
    from ._pure_loop import ServeLoop
    from ._pure_streams import SocketReader, SocketWriter

    IMPLEMENTATION = "python"
