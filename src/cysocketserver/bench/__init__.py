"""The side-by-side benchmark behind ``python -m cysocketserver bench``.

``harness`` runs the rounds, ``workloads`` says what each one serves and sends, ``server`` is
the server process (started by its path), ``report`` prints the table.  The load client is the
compiled ``cysocketserver._loadgen``.  Nothing here is imported unless a benchmark is run.
"""
from .harness import build_parser, finish_options, main, run, run_benchmark

__all__ = ["build_parser", "finish_options", "main", "run", "run_benchmark"]
