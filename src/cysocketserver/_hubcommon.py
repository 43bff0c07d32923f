"""What the two greenlet hubs (the compiled ``_hub`` and ``_pure_hub``) share, written once.

Both import from here; neither imports from the other.
"""
import os

__all__ = [
    "DEFAULT_IO_BUDGET", "HubBlockedWarning", "IO_BUDGET_ENV", "MAX_WAIT_SECONDS", "POLLIN",
    "POLLOUT", "describe_block", "io_budget_from_env",
]

POLLIN = 1
POLLOUT = 4

# The longest a hub sleeps in one epoll_wait()/poll()/select() call, in seconds.  A deadline
# further away is reached in several waits (each wake-up recomputes what is left), so the cap
# only keeps the millisecond count of the system call far inside an int.  The compiled hub, the
# serve loop's poller and the streams take the same value from CYS_MAX_WAIT_MS in
# includes/platform.h; a test checks that the two agree.
MAX_WAIT_SECONDS = 86400.0

# Fairness: how many I/O operations (each recv/send/accept... call that did not have to wait)
# a greenlet may complete in one turn before it gives way to the others through the hub's
# ready queue.  A handler whose client keeps its socket always ready (one that pipelines
# requests while it reads the replies) never waits, so without a budget it would keep the hub
# for as long as the client goes on.  Counting operations costs a decrement each (about 1 ns;
# a byte count costs the same, a clock read about 30 ns).  A handler that waits now and then
# (the usual request/reply client) never spends its budget.  For an always-ready line echo, a
# give-way every 64 operations cost about 3% more server CPU per line (16: 9%, 256: 1%), and a
# turn lasts well under a millisecond on the compiled engine.  0: no limit.
DEFAULT_IO_BUDGET = 64
IO_BUDGET_ENV = "CYSOCKETSERVER_HUB_IO_BUDGET"


def env_int(name, minimum, default):
    """The whole number in environment variable ``name`` if it is at least ``minimum``; else
    ``default`` (unset, not a number, or too small)."""
    text = os.environ.get(name)
    if text:
        try:
            value = int(text)
        except ValueError:
            return default
        if value >= minimum:
            return value
    return default


def io_budget_from_env():
    """The budget a new hub starts with: the environment's, or DEFAULT_IO_BUDGET."""
    return env_int(IO_BUDGET_ENV, 0, DEFAULT_IO_BUDGET)


def check_io_budget(value):
    """The budget as an int (operations per turn, 0 for no limit), or TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("io_budget must be an int, not %s" % type(value).__name__)
    if value < 0 or value > 0x3FFFFFFF:
        raise ValueError("io_budget must be between 0 (no limit) and 2**30 - 1")
    return value


class HubBlockedWarning(RuntimeWarning):
    """A greenlet ran longer than the hub's block_warning without giving the hub a turn."""


def describe_block(glet, held):
    """The warning text for a greenlet that kept the hub for ``held`` seconds."""
    what = "a greenlet"
    label = getattr(glet, "cysocketserver_label", None)
    if label is not None:
        handler_class, client_address = label
        what = "the greenlet of handler %s for %r" % (
            getattr(handler_class, "__qualname__", handler_class), client_address)
    where = "and finished"
    frame = getattr(glet, "gr_frame", None)
    if frame is not None:
        import traceback  # only when a block is reported

        stack = traceback.extract_stack(frame)
        # The innermost frame outside this package: the user's code that ran so long.
        pkg = os.path.dirname(os.path.abspath(__file__))
        user = [f for f in stack if not os.path.abspath(f.filename).startswith(pkg + os.sep)]
        f = (user or stack)[-1]
        where = "until it waited at %s:%d in %s()" % (f.filename, f.lineno, f.name)
    return "%s kept the hub for %.3f s %s" % (what, held, where)
