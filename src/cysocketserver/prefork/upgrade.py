"""A hitless upgrade: the parent starts a new copy of the program (the code on disk now) on the
same listener, and hands over to it once its workers serve.

On SIGUSR2 (or ``server.upgrade()``) the parent forks and executes the command line it was
started with (``sys.orig_argv``).  With ``balancing = "shared"`` the listener is passed down as
a service manager would pass it (descriptor 3, ``LISTEN_FDS=1``, ``LISTEN_PID``), so the program
must serve what ``listen_fds()`` returns when there is something (``python -m cysocketserver
echo`` does); the listener is never closed, so no connection attempt is refused.  With
``"reuseport"`` nothing is passed: the new program binds its own listeners into the same
SO_REUSEPORT group (so it must bind a fixed port, not 0).

The new parent says it is ready through a pipe named in ``CYSOCKETSERVER_UPGRADE_FD`` once all
its workers serve; the old parent then retires its workers (their open connections finish)
and its serve_forever() returns.  If the new program exits first, or is not ready within the
time allowed, the old parent stops it and goes on serving: a broken upgrade changes nothing.
"""
import fcntl
import os
import select
import sys
from time import monotonic

__all__ = ["Upgrade", "take_notify_fd", "announce_ready", "ENVIRONMENT", "LISTEN_FDS_START"]

ENVIRONMENT = "CYSOCKETSERVER_UPGRADE_FD"
LISTEN_FDS_START = 3
# Descriptors the child keeps across the exec are moved at or above this first, so that
# placing the listener at descriptor 3 cannot overwrite them.
_HIGH_FD = 10


class Upgrade:
    """An upgrade in progress, seen from the old parent."""

    def __init__(self, listener, timeout):
        self.deadline = monotonic() + timeout
        self.ready_fd, write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            _exec_new_program(listener, write_fd)  # never returns
        os.close(write_fd)

    def poll(self):
        """"ready", "failed" (the new program exited, or said nothing in time), or None."""
        try:
            data = os.read(self.ready_fd, 1) if _readable(self.ready_fd) else None
        except OSError:
            data = b""
        if data == b"r":
            return "ready"
        if data == b"" or monotonic() >= self.deadline:
            return "failed"
        return None

    def abandon(self, signum):
        """Stop the new program (it failed) and reap it."""
        try:
            os.kill(self.pid, signum)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.close()

    def close(self):
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1


def _readable(fd):
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


def _exec_new_program(listener, write_fd):
    try:
        notify = fcntl.fcntl(write_fd, fcntl.F_DUPFD, _HIGH_FD)
        os.set_inheritable(notify, True)
        env = dict(os.environ)
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(name, None)
        env[ENVIRONMENT] = str(notify)
        if listener is not None:
            fd = listener.fileno()
            if fd == LISTEN_FDS_START:
                os.set_inheritable(fd, True)
            else:
                os.dup2(fd, LISTEN_FDS_START, inheritable=True)
            env["LISTEN_FDS"] = "1"
            env["LISTEN_PID"] = str(os.getpid())
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
        os.execve(sys.executable, [sys.executable] + argv[1:], env)
    except BaseException as exc:
        try:
            os.write(2, ("cannot start the new program: %s\n" % exc).encode())
        finally:
            os._exit(127)


def take_notify_fd():
    """In a new parent started by an upgrade: the descriptor to announce readiness on (kept
    from the programs it starts), or None when this process was not started by one."""
    text = os.environ.pop(ENVIRONMENT, None)
    if not text:
        return None
    try:
        fd = int(text)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return None
    return fd


def announce_ready(fd):
    """All the new parent's workers serve: tell the old parent, which then hands over."""
    try:
        os.write(fd, b"r")
    except OSError:
        pass
    finally:
        os.close(fd)
