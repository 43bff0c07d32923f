"""The concurrency models, each one small dispatch object with one job.

A model runs admitted requests somewhere (the serving thread, a new thread, a child process,
a pooled thread, a greenlet) and says whether it can take another now.  The serve loop asks
``can_take()`` after each request it hands over; when the answer is no, the loop stops watching
the listener (the kernel's backlog holds the clients) until the model calls
``loop.resume_accepting()`` — no spin, no blocked loop, and shutdown() stays immediate.

``base.Model`` holds what every model shares; ``inline.Inline`` (the plain servers'),
``threads.ThreadPerRequest``, ``pool.PooledThreads``, ``forks.ForkPerRequest`` and the greenlet
model each change what they must.

Interface (``core.seam.Model``): ``batch`` (requests per wake-up), ``request_class`` (the class
of accepted sockets), ``cooperative`` (the listener is waited on through a hub),
``attach(loop)``, ``can_take()``, ``start(target, request, client_address)`` (run
``target(request, client_address)``), ``nap(seconds)`` (wait while the handlers run, for the
drain), ``stats()`` (its own figures for ``stats()``), ``close(block)`` (server_close: wait for
running requests when ``block``); ``name``, ``context_hook`` (the server hook that runs in
each request's own thread or greenlet, None where there is none), and ``keeps_connections`` (False where a child
process owns each connection, so the guards cannot act on it).
"""
from .base import Model
from .inline import Inline

__all__ = ["Model", "Inline"]
