"""Where a command serves: names resolved, bind errors worded, Unix socket files looked after,
addresses shown as a user types them."""
import errno
import os
import socket
import stat

from cysocketserver.cli.options import UsageError


def resolve(host, port, kind):
    """(family, address) to bind for ``host`` and ``port``; UsageError for an unknown host."""
    try:
        infos = socket.getaddrinfo(host, port, 0, kind, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError("unknown host %r: %s" % (host, exc.strerror)) from None
    except UnicodeError:
        raise UsageError("invalid host name %r" % host) from None
    family, _kind, _proto, _name, address = infos[0]
    return family, address


def display(address):
    """HOST:PORT, [IPv6]:PORT, or a Unix socket's path."""
    if isinstance(address, tuple):
        host, port = address[:2]
        return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    return str(address)


def bind_error(where, exc):
    """The UsageError for an OSError from binding ``where``."""
    reasons = {
        errno.EADDRINUSE: "address in use",
        errno.EACCES: "permission denied",
        errno.EADDRNOTAVAIL: "address not available on this machine",
    }
    return UsageError("cannot serve on %s: %s"
                      % (where, reasons.get(exc.errno, exc.strerror or exc)))


def remove_stale_unix_socket(path):
    """A socket file left by a server that is gone (nobody accepts on it) is removed."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UsageError("cannot serve on %s: the path exists and is not a socket" % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    else:
        raise UsageError("cannot serve on %s: another server is listening there" % path)
    finally:
        probe.close()


def remove_socket_file(server, path):
    """The socket file of a Unix server bound to ``path`` (not one passed to us) goes with it."""
    if path and server.server_address == path:
        try:
            os.unlink(path)
        except OSError:
            pass
