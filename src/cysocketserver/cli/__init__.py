"""``python -m cysocketserver``: the command line, one module a job.

- ``main``: the parser and the dispatch to the subcommands.
- ``options``: option values (ports, addresses, whole numbers, seconds) and one-line errors.
- ``echo``: the echo subcommand: its handlers, server classes, checks, binding and running.
- ``proxy``: the proxy subcommand: its options, server class, binding, reloading and running
  (the proxy itself is the ``cysocketserver.proxy`` package).
- ``serving``: what the serving commands share: guard and operations options, logging, mix-ins.
- ``workers``: ``echo --workers``, under the prefork supervisor.
- ``binding``: resolving, binding errors, Unix socket files.
- ``exporter``: the ``--metrics`` endpoint.

A service layer: it may import any part of the package, and nothing in the package imports it.
"""
from cysocketserver.cli.main import main

__all__ = ["main"]
