"""Socket activation: the listening sockets a service manager (systemd, or anything speaking
its protocol) opened and handed over, as sd_listen_fds(3) describes.

The manager passes descriptors 3, 4, ... and sets ``LISTEN_FDS`` (how many), ``LISTEN_PID`` (the
process they are for: a child that inherits the environment must not take them too) and
optionally ``LISTEN_FDNAMES`` (colon-separated names, from ``FileDescriptorName=``).

Serve one with any server class::

    import cysocketserver

    sock, = cysocketserver.listen_fds()
    with cysocketserver.ThreadingTCPServer.from_socket(sock, Handler) as server:
        server.serve_forever()
"""
import os
import socket

__all__ = ["listen_fds", "LISTEN_FDS_START"]

LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_fds(unset_environment=True, *, with_names=False):
    """The sockets passed to this process, as ``socket.socket`` objects with their real family,
    type and protocol; an empty list when none were (no ``LISTEN_FDS``, or ``LISTEN_PID`` names
    another process).

    With ``with_names``, a list of ``(name, socket)`` pairs: the names from ``LISTEN_FDNAMES``,
    or ``"unknown"`` where it gives none, as sd_listen_fds_with_names(3) does.
    ``unset_environment`` (default True) removes the three variables, so that child processes
    do not take the sockets for theirs.  Each descriptor is made close-on-exec.  A passed
    descriptor that is not a socket raises OSError; a malformed variable, ValueError.
    """
    try:
        pid_text = os.environ.get("LISTEN_PID")
        count_text = os.environ.get("LISTEN_FDS")
        names_text = os.environ.get("LISTEN_FDNAMES")
        if not pid_text or not count_text:
            return []
        try:
            pid = int(pid_text)
            count = int(count_text)
        except ValueError:
            raise ValueError("LISTEN_PID and LISTEN_FDS must be numbers, not %r and %r"
                             % (pid_text, count_text)) from None
        if pid != os.getpid():
            return []
        if count < 0:
            raise ValueError("LISTEN_FDS must not be negative, not %d" % count)
        names = names_text.split(":") if names_text else []
        if names and len(names) != count:
            raise ValueError("LISTEN_FDNAMES names %d descriptors, LISTEN_FDS says %d"
                             % (len(names), count))
        sockets = []
        for index in range(count):
            fd = LISTEN_FDS_START + index
            os.set_inheritable(fd, False)
            try:
                sock = socket.socket(fileno=fd)
            except OSError as exc:
                for made in sockets:
                    made.detach()
                raise OSError(exc.errno, "descriptor %d passed in LISTEN_FDS is not a socket: %s"
                              % (fd, exc.strerror)) from None
            sockets.append(sock)
    finally:
        if unset_environment:
            for name in _VARIABLES:
                os.environ.pop(name, None)
    if with_names:
        return [(names[index] if names else "unknown", sock) for index, sock in enumerate(sockets)]
    return sockets
