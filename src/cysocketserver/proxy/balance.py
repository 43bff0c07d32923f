"""How a new connection picks its upstream among the eligible ones: ``roundrobin`` (smooth
weighted round robin, as nginx does it), ``leastconn`` (fewest open connections per unit of
weight) and ``source`` (weighted rendezvous hashing of the client's address).

Each balancer's ``pick(candidates, client_host)`` returns one of ``candidates`` (a non-empty
list of ``Upstream``); a retry calls it again without the upstreams already tried.
"""
import hashlib
import math

__all__ = ["RoundRobin", "LeastConn", "Source", "make_balancer"]


class RoundRobin:
    """Smooth weighted round robin: each pick adds every candidate's weight to its score and
    takes the highest, which then gives back the candidates' total.  Weights 5, 1, 1 give
    a a b a c a a -- spread through the cycle, not in bursts."""

    def __init__(self):
        self._scores = {}

    def pick(self, candidates, client_host):
        total = 0
        best = None
        for upstream in candidates:
            score = self._scores.get(upstream.name, 0) + upstream.weight
            self._scores[upstream.name] = score
            total += upstream.weight
            if best is None or score > self._scores[best.name]:
                best = upstream
        self._scores[best.name] -= total
        return best


class LeastConn:
    """The candidate with the fewest open connections per unit of weight; ties go round in
    turn, so that idle upstreams share the first connections."""

    def __init__(self):
        self._turn = 0

    def pick(self, candidates, client_host):
        self._turn += 1
        count = len(candidates)
        rotated = [candidates[(self._turn + offset) % count] for offset in range(count)]
        return min(rotated, key=lambda upstream: upstream.active / upstream.weight)


class Source:
    """Weighted rendezvous hashing: each upstream scores the client's address and the highest
    score wins.  Removing an upstream (or its going down) moves only the clients it had;
    adding one takes from each the share its weight asks for.  Behind --accept-proxy the
    address is the one the PROXY header names."""

    def pick(self, candidates, client_host):
        return max(candidates, key=lambda upstream: self.score(client_host, upstream))

    @staticmethod
    def score(client_host, upstream):
        digest = hashlib.blake2b(("%s|%s" % (client_host, upstream.name)).encode("utf-8"),
                                 digest_size=8).digest()
        # A uniform number in (0, 1), turned into a weight-scaled score (-w / ln u).
        uniform = (int.from_bytes(digest, "big") + 1) / (2 ** 64 + 1)
        return -upstream.weight / math.log(uniform)


_BALANCERS = {"roundrobin": RoundRobin, "leastconn": LeastConn, "source": Source}


def make_balancer(name):
    return _BALANCERS[name]()
