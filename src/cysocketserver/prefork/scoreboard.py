"""The prefork scoreboard: what each worker process tells the parent, in shared memory.

The parent maps one anonymous shared region before it forks any worker and gives each worker
process a slot of its own.  A slot has a small header (who the worker is, its state, its last
heartbeat, the parent's order to it) and the worker's server counters (the engine's
``Counters`` stored in the slot: every connection a worker counts is in shared memory the moment
it is counted, so a worker killed by SIGKILL loses none of it).

Each slot has one writer for each cell: the worker writes its state, heartbeat and counters;
the parent writes who the worker is and its order.  The parent only reads the rest.

A slot belongs to one process, not to one worker index: during a reload the old and the new
worker of an index count at the same time, each in its own slot.  When the parent has reaped a
worker it folds the slot's totals into its index's ``retired`` totals (kept in the parent) and
frees the slot.  So the figures per index never go backwards when a worker is replaced, and
nothing is left behind by a process that is gone (no file per PID).
"""
import mmap
from time import monotonic

__all__ = ["Scoreboard", "Slot", "STARTING", "READY", "RETIRING", "STATE_NAMES",
           "ORDER_NONE", "ORDER_SWEEP"]

# The header's cells (unsigned 64-bit), in order.
_HEADER = ("pid", "index", "generation", "state", "order", "started_us", "heartbeat_us", "spare")
_CELL = 8
# Slots start on a cache line, so that two workers never write to the same one.
_ALIGN = 64

FREE, STARTING, READY, RETIRING = 0, 1, 2, 3
STATE_NAMES = {FREE: "free", STARTING: "starting", READY: "serving", RETIRING: "retiring"}
# ORDER_SWEEP: the listener closes after this worker: take every connection already queued
# before stopping (no queued connection is reset).
ORDER_NONE, ORDER_SWEEP = 0, 1


def _micros(seconds):
    return int(seconds * 1_000_000)


class Slot:
    """One worker process's slot.  The worker's side: ``state``, ``beat()``, ``counters_buffer``;
    the parent's: the header it fills in when it forks, ``order``, ``totals()``."""

    __slots__ = ("number", "_cells", "counters_buffer", "_fields")

    def __init__(self, number, cells, counters_buffer, fields):
        self.number = number
        self._cells = cells
        self.counters_buffer = counters_buffer
        self._fields = fields

    def _get(self, position):
        return self._cells[position]

    def _set(self, position, value):
        self._cells[position] = value

    pid = property(lambda self: self._get(0), lambda self, v: self._set(0, v))
    index = property(lambda self: self._get(1), lambda self, v: self._set(1, v))
    generation = property(lambda self: self._get(2), lambda self, v: self._set(2, v))
    state = property(lambda self: self._get(3), lambda self, v: self._set(3, v))
    order = property(lambda self: self._get(4), lambda self, v: self._set(4, v))

    @property
    def started(self):
        return self._cells[5] / 1_000_000

    @property
    def heartbeat(self):
        """The worker's last heartbeat (time.monotonic(), which every process shares)."""
        return self._cells[6] / 1_000_000

    def beat(self, now=None):
        self._cells[6] = _micros(monotonic() if now is None else now)

    def totals(self):
        """The worker's counters now, by name."""
        values = self.counters_buffer.cast("Q")
        return dict(zip(self._fields, values))

    def clear(self, index, generation):
        for position in range(len(self._cells)):
            self._cells[position] = 0
        cells = self.counters_buffer.cast("Q")
        for position in range(len(cells)):
            cells[position] = 0
        self.index = index
        self.generation = generation
        self.state = STARTING
        now = _micros(monotonic())
        self._cells[5] = now
        self._cells[6] = now


class Scoreboard:
    """``capacity`` slots in one shared anonymous mapping, made before the first fork."""

    def __init__(self, capacity, counters_class):
        self.fields = tuple(counters_class.FIELDS)
        counters_size = counters_class.SIZE
        header = len(_HEADER) * _CELL
        stride = -(-(header + counters_size) // _ALIGN) * _ALIGN
        self.capacity = capacity
        # MAP_SHARED|MAP_ANONYMOUS: the workers forked later write into the same pages.
        self._map = mmap.mmap(-1, stride * capacity)
        self._view = view = memoryview(self._map)
        self._slots = []
        for number in range(capacity):
            start = number * stride
            cells = view[start:start + header].cast("Q")
            counters = view[start + header:start + header + counters_size]
            self._slots.append(Slot(number, cells, counters, self.fields))
        self._free = list(range(capacity - 1, -1, -1))

    def allocate(self, index, generation):
        """A fresh slot for a worker about to be forked; None when all are taken."""
        if not self._free:
            return None
        slot = self._slots[self._free.pop()]
        slot.clear(index, generation)
        return slot

    def release(self, slot):
        """The slot's worker has been reaped: the slot may serve another."""
        slot.state = FREE
        slot.pid = 0
        self._free.append(slot.number)

    def close(self):
        for slot in self._slots:
            slot._cells.release()
            slot.counters_buffer.release()
        self._slots = []
        self._free = []
        self._view.release()
        try:
            self._map.close()
        except BufferError:
            pass  # a view is still held somewhere; the mapping goes with the process
