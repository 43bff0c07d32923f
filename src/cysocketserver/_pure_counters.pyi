# The pure-Python twin of _counters (_pure_counters.py): the same classes, typed the same. Its
# totals are attributes made from the declaration (_counterfields) at import, which a type
# checker cannot see in the source.
from ._counters import Counters as Counters, Meter as Meter

__all__ = ["Meter", "Counters"]
