"""Checking a setting's value, written once for every part of the package that has settings.

Each helper returns the value as it will be used, or raises TypeError (the wrong kind of value)
or ValueError (the right kind, out of range) with a message that names the setting and the
value.  ``name`` is that name: ``setting_name(server, "idle_timeout")`` gives
"ThreadingTCPServer.idle_timeout", and ``checked(server, "idle_timeout", seconds)`` checks
that attribute under that name.  ``none_means``: where None is allowed, what it means ("no
limit", "off"), said in the ValueError's message; None then passes through unchanged.
"""
import math

__all__ = ["setting_name", "checked", "whole_number", "positive_int", "seconds", "choice"]


def _is_integral(value):
    if isinstance(value, int):
        return not isinstance(value, bool)
    import numbers  # only for other integer types (numpy's, say)

    return isinstance(value, numbers.Integral)


def _is_real(value):
    if isinstance(value, (int, float)):
        return not isinstance(value, bool)
    import numbers

    return isinstance(value, numbers.Real)


def setting_name(owner, attribute):
    """How messages name ``owner``'s setting ``attribute``: its class's name, a dot, the name."""
    return "%s.%s" % (type(owner).__name__, attribute)


def checked(owner, attribute, check, *how, **more):
    """``check`` (one of the helpers below) applied to ``owner``'s ``attribute`` (None where
    it has none), named as ``setting_name`` names it."""
    return check(setting_name(owner, attribute), getattr(owner, attribute, None), *how, **more)


def _or_none(none_means):
    return "" if none_means is None else " (or None for %s)" % none_means


def whole_number(name, value, minimum=0, none_means=None):
    """``value`` as an int of at least ``minimum`` (bools are not numbers here)."""
    if value is None and none_means is not None:
        return None
    if not _is_integral(value):
        raise TypeError("%s must be a whole number%s, not %r"
                        % (name, "" if none_means is None else " or None", value))
    if value < minimum:
        raise ValueError("%s must be at least %d%s, not %r"
                         % (name, minimum, _or_none(none_means), value))
    return int(value)


def positive_int(name, value, none_means=None):
    """``value`` as an int of at least 1."""
    return whole_number(name, value, 1, none_means)


def seconds(name, value, zero_ok=False, none_means=None):
    """``value`` as a float number of seconds: finite, above 0 (or 0 as well, ``zero_ok``)."""
    if value is None and none_means is not None:
        return None
    if not _is_real(value):
        raise TypeError("%s must be a number of seconds%s, not %r"
                        % (name, "" if none_means is None else " or None", value))
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: far from finite seconds
        number = math.inf
    # NaN fails both comparisons.
    if not (number > 0 or (zero_ok and number == 0)) or math.isinf(number):
        raise ValueError("%s must be a finite number of seconds %s 0%s, not %r"
                         % (name, ">=" if zero_ok else ">", _or_none(none_means), value))
    return number


def choice(name, value, options):
    """``value``, which must be one of ``options`` (listed in the message, in their order)."""
    try:
        known = value in options
    except TypeError:  # unhashable, against a set or a dict's keys
        known = False
    if not known:
        raise ValueError("%s must be one of %s, not %r"
                         % (name, ", ".join(map(repr, options)), value))
    return value
