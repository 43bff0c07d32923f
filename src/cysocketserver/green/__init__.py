"""The greenlet layer, one job per module; its public names are in ``cysocketserver.greenlets``.

In the order they import one another:

- ``hub``: this thread's hub (made on first use, let go of in a forked child), ``sleep()``,
  the hub's raw ``spawn()``, and the event bits ``POLLIN``/``POLLOUT`` that its ``wait_fd()`` takes.
- ``to_thread``: ``to_thread()``, a blocking call run in a worker thread while the hub serves
  on, and the size of that worker pool.
- ``timeouts``: the timeout of a cooperative socket, its descriptor always non-blocking.
- ``socket``: ``GreenSocket``, the cooperative ``socket.socket``, and ``connect()``.
- ``tasks``: ``spawn()`` and ``Task``: more work on this thread's hub, joined or killed.
- ``waiter``: ``HubWaiter``, how a greenlet server's serve loop waits on its listener.
- ``servers``: ``GreenletMixIn`` and the ``Greenlet*Server`` classes.

The dispatch model (a greenlet per request) is ``models.greenlet``, beside the other models.
"""
