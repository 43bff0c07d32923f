"""The serving core: policy written once, in Python, for every engine and concurrency model.

``policy``   which hooks a server overrides, the per-request order, timeouts, back-off;
``registry`` every live connection of a server;
``models``   the concurrency models (inline, thread, fork, pool, greenlet) as dispatch objects;
``seam``     what the engines (compiled, and the pure-Python twin) must provide.
"""
