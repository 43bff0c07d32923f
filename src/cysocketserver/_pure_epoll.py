"""The selector of the pure-Python engine's poller and hub: on Linux an epoll set that does what
``selectors.EpollSelector`` does and can also add a descriptor with EPOLLEXCLUSIVE, which
``selectors`` cannot ask for; elsewhere the platform's default selector.

``new_selector()`` returns one.  Both kinds take ``register(fd, events, data, exclusive=False)``
and otherwise the ``selectors`` calls the engine makes (``modify``, ``unregister``, ``select``,
``close``), with the same results and errors.  ``exclusive`` asks that, of the processes waiting
for ``fd``, the kernel wake one; where there is no EPOLLEXCLUSIVE it is ignored.  The kernel
accepts the flag from EPOLL_CTL_ADD only (EPOLL_CTL_MOD with it fails with EINVAL), so changing
such a registration removes the descriptor and adds it again.
"""
import math
import select
import selectors

__all__ = ["new_selector"]

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
_EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)


class EpollSet:
    """``selectors.EpollSelector`` for descriptor numbers, plus exclusive registrations."""

    def __init__(self):
        self._epoll = select.epoll()
        self._keys = {}            # fd -> selectors.SelectorKey
        self._exclusive = set()    # the fds added with EPOLLEXCLUSIVE

    @staticmethod
    def _epoll_events(events):
        return ((select.EPOLLIN if events & EVENT_READ else 0)
                | (select.EPOLLOUT if events & EVENT_WRITE else 0))

    def _check(self, fd, events):
        if not isinstance(fd, int) or fd < 0:
            raise ValueError("Invalid file descriptor: {!r}".format(fd))
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError("Invalid events: {!r}".format(events))

    def register(self, fd, events, data=None, exclusive=False):
        self._check(fd, events)
        if fd in self._keys:
            raise KeyError("{!r} (FD {}) is already registered".format(fd, fd))
        flags = self._epoll_events(events)
        exclusive = exclusive and _EPOLLEXCLUSIVE
        if exclusive:
            flags |= _EPOLLEXCLUSIVE
        self._epoll.register(fd, flags)
        key = self._keys[fd] = selectors.SelectorKey(fd, fd, events, data)
        if exclusive:
            self._exclusive.add(fd)
        return key

    def modify(self, fd, events, data=None):
        try:
            key = self._keys[fd]
        except KeyError:
            raise KeyError("{!r} is not registered".format(fd)) from None
        self._check(fd, events)
        if events != key.events:
            flags = self._epoll_events(events)
            if fd in self._exclusive:
                try:
                    self._epoll.unregister(fd)
                    self._epoll.register(fd, flags | _EPOLLEXCLUSIVE)
                except OSError:
                    # Out of the epoll set now: forget it here too.
                    del self._keys[fd]
                    self._exclusive.discard(fd)
                    raise
            else:
                self._epoll.modify(fd, flags)
        key = self._keys[fd] = key._replace(events=events, data=data)
        return key

    def unregister(self, fd):
        try:
            key = self._keys.pop(fd)
        except KeyError:
            raise KeyError("{!r} is not registered".format(fd)) from None
        self._exclusive.discard(fd)
        try:
            self._epoll.unregister(fd)
        except OSError:
            # Closed already, which removed it (as selectors tolerates).
            pass
        return key

    def select(self, timeout=None):
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:
            # Rounded up to the millisecond epoll_wait() counts in, so as not to wake early.
            timeout = math.ceil(timeout * 1e3) * 1e-3
        ready = []
        keys = self._keys
        for fd, happened in self._epoll.poll(timeout, max(len(keys), 1)):
            key = keys.get(fd)
            if key is None:
                continue
            # As selectors reads them: an error or a hang-up is both readable and writable.
            events = ((EVENT_WRITE if happened & ~select.EPOLLIN else 0)
                      | (EVENT_READ if happened & ~select.EPOLLOUT else 0))
            ready.append((key, events & key.events))
        return ready

    def get_map(self):
        return dict(self._keys)

    def close(self):
        self._epoll.close()
        self._keys.clear()
        self._exclusive.clear()


class _DefaultSelector(selectors.DefaultSelector):
    """The platform's selector, which has no exclusive wake-up: ``exclusive`` is ignored."""

    def register(self, fileobj, events, data=None, exclusive=False):
        return super().register(fileobj, events, data)


def new_selector():
    return EpollSet() if hasattr(select, "epoll") else _DefaultSelector()
