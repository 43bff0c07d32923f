"""The upstreams a proxy forwards to: each one's health state and open connections, and the
set that says which may take a new connection.

An ``Upstream`` lives as long as its name is configured: a reload that keeps a name keeps its
object (its state and counts), so open connections and health carry over.  Health: an
upstream starts up; ``fall`` failures in a row (checks, or connects from real traffic) take it
down, ``rise`` successful checks in a row bring it back.  Each change is logged once.
"""
import logging

__all__ = ["Upstream", "UpstreamSet"]

log = logging.getLogger("cysocketserver")


class Upstream:
    """One upstream: its spec (``UpstreamSpec``), ``up``, ``active`` (connections open through
    this process), and its row in the counters (``counters``, a ``counters.Column``)."""

    def __init__(self, spec, counters):
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.counters = counters
        self.up = True
        self.active = 0
        self._failures = 0       # in a row, while up
        self._successes = 0      # in a row, while down

    def __repr__(self):
        return "<Upstream %s %s, %d open>" % (self.name, "up" if self.up else "down",
                                            self.active)

    @property
    def weight(self):
        return self.spec.weight

    @property
    def full(self):
        limit = self.spec.max_connections
        return limit is not None and self.active >= limit

    def succeeded(self, rise):
        """A check (or a connect) worked."""
        self._failures = 0
        if not self.up:
            self._successes += 1
            if self._successes >= rise:
                self._change(True, "%d check(s) passed" % self._successes)

    def failed(self, fall, reason):
        """A check or a connect failed (``reason``: what happened, for the log)."""
        self._successes = 0
        if self.up:
            self._failures += 1
            if self._failures >= fall:
                self._change(False, "%d failure(s) in a row, the last: %s"
                             % (self._failures, reason))

    def _change(self, up, why):
        self.up = up
        self._failures = self._successes = 0
        self.counters.set_up(up)
        if up:
            log.warning("upstream %s is up: %s", self.name, why)
        else:
            log.warning("upstream %s is down: %s; no new connections go to it until it "
                        "rises", self.name, why)


class UpstreamSet:
    """The configured upstreams, in order; which of them may take a new connection."""

    def __init__(self, upstreams):
        self.upstreams = tuple(upstreams)
        self.by_name = {upstream.name: upstream for upstream in self.upstreams}

    def __iter__(self):
        return iter(self.upstreams)

    def __len__(self):
        return len(self.upstreams)

    def any_up(self):
        return any(upstream.up for upstream in self.upstreams)

    def eligible(self, excluded=()):
        """The upstreams a new connection may go to: the primary ones that are up and not at
        their max-connections; while no primary one is up, the backup ones the same way."""
        for backup in (False, True):
            up = [upstream for upstream in self.upstreams
                  if upstream.spec.backup is backup and upstream.up]
            if up:
                return [upstream for upstream in up
                        if not upstream.full and upstream not in excluded]
        return []
