"""The serving core: policy written once, in Python, for every engine and concurrency model.

``hooks``       which of a server's hooks are the package's own (the engines' native paths);
``plan``        what an engine needs to serve: the plan, the batch, the back-off, timeouts;
``admission``   the per-request order, from the listener to release, with the stdlib's errors;
``state``       ``state_of(server)``: the one object holding every per-server part;
``registry``    every live connection of a server;
``guards``      connection limits, the idle sweep and the drain;
``stats``       what ``stats()`` reports;
``nodelay``     TCP_NODELAY on accepted connections;
``proxyproto``  receiving the PROXY protocol;
``seam``        what the engines (compiled, and the pure-Python twin) provide, for readers
                and type checkers (nothing imports it at run time).

The core imports only from the engine layer; the concurrency models (``models``) and
everything above them import from it.
"""
