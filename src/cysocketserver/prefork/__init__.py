"""Every core: a server served by several worker processes under a supervising parent.

- ``mixin``: PreforkMixIn, its settings and its statistics across workers;
- ``supervisor``: the parent: forking, reaping, replacing, heartbeats, signals, reloads;
- ``worker``: one worker process's life, from fork() to exit;
- ``listeners``: the balancing modes (one shared listener, or one SO_REUSEPORT listener per
  worker) and closing a listener without resetting what is queued on it;
- ``scoreboard``: the shared memory through which the workers report to the parent;
- ``upgrade``: handing the listener to a new copy of the program (SIGUSR2).
"""
from .mixin import PreforkMixIn, default_workers

__all__ = ["PreforkMixIn", "default_workers"]
