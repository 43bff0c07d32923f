"""What the two greenlet hubs (the compiled ``_hub`` and ``_pure_hub``) share, written once.

Both import from here; neither imports from the other.
"""
import os
import traceback

__all__ = ["HubBlockedWarning", "MAX_WAIT_SECONDS", "POLLIN", "POLLOUT", "describe_block"]

POLLIN = 1
POLLOUT = 4

# The longest a hub sleeps in one epoll_wait()/poll()/select() call, in seconds.  A deadline
# further away is reached in several waits (each wake-up recomputes what is left), so the cap
# only keeps the millisecond count of the system call far inside an int.  The compiled hub, the
# serve loop's poller and the streams take the same value from CYS_MAX_WAIT_MS in
# includes/platform.h; a test checks that the two agree.
MAX_WAIT_SECONDS = 86400.0


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
        stack = traceback.extract_stack(frame)
        # The innermost frame outside this package: the user's code that ran so long.
        pkg = os.path.dirname(os.path.abspath(__file__))
        user = [f for f in stack if not os.path.abspath(f.filename).startswith(pkg + os.sep)]
        f = (user or stack)[-1]
        where = "until it waited at %s:%d in %s()" % (f.filename, f.lineno, f.name)
    return "%s kept the hub for %.3f s %s" % (what, held, where)
