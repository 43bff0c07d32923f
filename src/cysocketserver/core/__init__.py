"""The serving core: policy written once, in Python, for every engine and concurrency model.

``policy``      which hooks a server overrides, the plan an engine reads, the per-request order,
                timeouts, the accept back-off;
``registry``    every live connection of a server;
``guards``      connection limits, the idle sweep and the drain;
``stats``       what ``stats()`` reports;
``nodelay``     TCP_NODELAY on accepted connections;
``proxyproto``  receiving the PROXY protocol;
``seam``        what the engines (compiled, and the pure-Python twin) provide.

The concurrency models (inline, thread, fork, pool, greenlet) are in ``models``.
"""
