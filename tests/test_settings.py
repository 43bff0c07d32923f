"""The settings checks every part of the package shares (``core.settings``): what they accept,
and the message a user reads for what they refuse."""
import decimal
import fractions
import re

import pytest

from cysocketserver.core.settings import (checked, choice, positive_int, seconds, setting_name,
                                          whole_number)


def _refused(error, message, check, *args, **kwargs):
    with pytest.raises(error, match="^%s$" % re.escape(message)):
        check(*args, **kwargs)


class Server:
    max_connections = 4
    idle_timeout = "soon"


def test_a_setting_is_named_by_its_owners_class():
    assert setting_name(Server(), "max_connections") == "Server.max_connections"


def test_checked_reads_the_attribute_and_names_it():
    assert checked(Server(), "max_connections", positive_int) == 4
    assert checked(Server(), "missing", positive_int, none_means="no limit") is None
    _refused(TypeError, "Server.idle_timeout must be a number of seconds, not 'soon'",
             checked, Server(), "idle_timeout", seconds)


@pytest.mark.parametrize("value, expected", [(0, 0), (7, 7), (2**70, 2**70)])
def test_whole_numbers_are_accepted_as_ints(value, expected):
    result = whole_number("s.n", value)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [1.0, "3", True, None, decimal.Decimal(2)])
def test_a_whole_number_must_be_an_integer(value):
    _refused(TypeError, "s.n must be a whole number, not %r" % (value,), whole_number, "s.n",
             value)


def test_a_whole_number_has_a_minimum():
    _refused(ValueError, "s.n must be at least 2, not 1", whole_number, "s.n", 1, minimum=2)
    _refused(ValueError, "s.n must be at least 0, not -1", whole_number, "s.n", -1)


def test_positive_int_says_what_none_means_where_none_is_allowed():
    assert positive_int("s.limit", None, none_means="no limit") is None
    assert positive_int("s.limit", 1) == 1
    _refused(ValueError, "s.limit must be at least 1 (or None for no limit), not 0",
             positive_int, "s.limit", 0, none_means="no limit")
    _refused(TypeError, "s.limit must be a whole number or None, not 2.5",
             positive_int, "s.limit", 2.5, none_means="no limit")
    _refused(TypeError, "s.limit must be a whole number, not None", positive_int, "s.limit",
             None)


@pytest.mark.parametrize("value, expected", [
    (1, 1.0), (0.25, 0.25), (fractions.Fraction(1, 2), 0.5)])
def test_seconds_are_accepted_as_floats(value, expected):
    result = seconds("s.t", value)
    assert result == expected and type(result) is float


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), 10**400])
def test_seconds_must_be_finite_and_above_zero(value):
    _refused(ValueError, "s.t must be a finite number of seconds > 0 (or None for off), not %r"
             % (value,), seconds, "s.t", value, none_means="off")


def test_zero_seconds_where_zero_is_allowed():
    assert seconds("s.t", 0, zero_ok=True) == 0.0
    _refused(ValueError, "s.t must be a finite number of seconds >= 0, not -0.5",
             seconds, "s.t", -0.5, zero_ok=True)


@pytest.mark.parametrize("value", ["30", True, [1], decimal.Decimal("1.5"), None])
def test_seconds_must_be_a_number(value):
    _refused(TypeError, "s.t must be a number of seconds, not %r" % (value,), seconds, "s.t",
             value)
    if value is not None:
        _refused(TypeError, "s.t must be a number of seconds or None, not %r" % (value,),
                 seconds, "s.t", value, none_means="off")


def test_choice_lists_the_options_in_order():
    assert choice("s.mode", "b", ("a", "b")) == "b"
    _refused(ValueError, "s.mode must be one of 'a', 'b', not 'c'", choice, "s.mode", "c",
             ("a", "b"))
    # An unhashable value against a dict's keys is refused the same way, not with a TypeError.
    _refused(ValueError, "s.mode must be one of 'a', 'b', not ['a']", choice, "s.mode", ["a"],
             {"a": 1, "b": 2})
