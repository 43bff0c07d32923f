"""How much faster one server is than another, and how far the rounds agree on it.

The harness runs the servers in turn, round by round, so round k of each saw about the same
machine.  The ratio is therefore taken round by round (rate of round k over the base's rate
of round k); its median is the figure to read, the lowest and highest per-round ratios say how
much the rounds disagreed, and a figure whose rounds disagree too much is marked noisy.
"""
import statistics
from dataclasses import dataclass

__all__ = ["NOISY_SPREAD", "RatioSpread", "spread_of", "round_rate", "paired_ratios",
           "ratio_spread"]

# Rounds whose ratios spread over more than this share of their median (lowest to highest)
# disagree too much for the median to be taken as a result.
NOISY_SPREAD = 0.20


@dataclass(frozen=True)
class RatioSpread:
    """The per-round ratios of one server to another, summed up."""
    median: float
    low: float
    high: float
    rounds: int

    @property
    def spread(self):
        """Highest minus lowest per-round ratio, as a share of the median."""
        if self.median <= 0:
            return float("inf")
        return (self.high - self.low) / self.median

    @property
    def noisy(self):
        """Too few rounds, or rounds too far apart, for the median to be a result."""
        return self.rounds < 2 or self.spread > NOISY_SPREAD

    def as_dict(self):
        return {"median": self.median, "low": self.low, "high": self.high,
                "rounds": self.rounds, "spread": self.spread, "noisy": self.noisy}


def spread_of(ratios):
    """The RatioSpread of some per-round ratios; None when there are none."""
    ratios = list(ratios)
    if not ratios:
        return None
    return RatioSpread(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def round_rate(result, unit):
    """What one round measured, in the workload's unit; None for a round that failed."""
    if not result or "error" in result:
        return None
    return result.get("mb_per_s") if unit == "MB/s" else result.get("rate")


def paired_ratios(base_rounds, rounds, unit="req/s"):
    """rate / base rate, round by round; pairs where either round failed (or the base
    measured nothing) are left out."""
    ratios = []
    for base, mine in zip(base_rounds, rounds):
        a, b = round_rate(base, unit), round_rate(mine, unit)
        if a and b is not None:
            ratios.append(b / a)
    return ratios


def ratio_spread(entry, impl, base="stdlib"):
    """The RatioSpread of impl to base on one workload of the results; None if either did
    not run or no round of theirs can be paired."""
    impls = entry["implementations"]
    if impl not in impls or base not in impls:
        return None
    return spread_of(paired_ratios(impls[base].get("rounds", []), impls[impl].get("rounds", []),
                                   entry["unit"]))
