"""An L4 (TCP) proxy's parts, one job a module; ``python -m cysocketserver proxy`` runs them.

- ``config``: the settings -- the upstream syntax, defaults, the TOML file, the command line
  over it.
- ``upstreams``: each upstream's health state and open connections; which may take a new one.
- ``balance``: picking an upstream: roundrobin, leastconn, source.
- ``health``: the health checks.
- ``counters``: per-upstream counters shared by the processes, and their Prometheus text.
- ``server``: the handler and the server mix-in: connect (with retries), relay, count.

A service layer: it may import any part of the package, and nothing in the package imports it.
"""
