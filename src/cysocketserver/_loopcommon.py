"""What both serve loops (the compiled ``_loop`` and its twin ``_pure_loop``) share with the
policy that plans their work: how requests come off the listener, what a wait reports, and
TCP_NODELAY on the connections they accept.  Engine layer: it imports nothing from the package."""
import socket

__all__ = ["INTAKE_HOOKS", "INTAKE_ACCEPT", "INTAKE_RECVFROM", "LISTENER_READY", "WOKEN",
           "set_nodelay"]

# What a loop's waiter (the poller, or the greenlet servers' hub) reports, as bits.
LISTENER_READY = 1
WOKEN = 2

# How requests come off the listener (``Plan.intake``).
INTAKE_HOOKS = 0      # the server's own _handle_request_noblock()/get_request(), one per wake-up
INTAKE_ACCEPT = 1     # the engine accepts in batches (stream sockets, IPv4/IPv6)
INTAKE_RECVFROM = 2   # the engine receives datagrams in batches (IPv4/IPv6)


def set_nodelay(sock):
    """Set TCP_NODELAY on an accepted connection; a failure is no reason to refuse it.

    (Some systems refuse the option on a connection the client has already reset; its handler
    then meets the reset on its first read or write, as it would have anyway.)
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
