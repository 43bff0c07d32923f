"""Per-upstream counters every process of the proxy writes and the one serving --metrics
reads: connections, connect failures, bytes each way, and whether the upstream is up.

They live in one anonymous shared mapping made before any worker is forked (as the prefork
scoreboard's do), so with --workers the parent sums what every worker counted.  Each process
claims a row of its own the first time it counts (one short lock, only then); within its row it
is the only writer, so a count is a plain store, never lost to another process.  A row whose
process has died is taken over by the next process that claims one: its totals stay (counters
never go backwards) and its open connections, gone with the process, are closed.

Columns are upstream names, given out by the process that builds the upstream sets (the parent
with --workers, before it forks); a worker counts into the columns it inherited.
"""
import logging
import mmap
import os

__all__ = ["Board", "Column", "FIELDS", "exposition"]

log = logging.getLogger("cysocketserver")

# The cells of one (process, upstream) pair, unsigned 64-bit each.  "opened" - "closed" is the
# connections open now; "state" is 0 (nothing said), 1 (down) or 2 (up).
FIELDS = ("opened", "closed", "failures", "sent", "received", "state")
_CELL = 8
_PID = 0


# This process's id, kept up to date across fork() rather than asked of the kernel at every
# count (os.getpid() is a system call: four per proxied connection).
_this_process = [os.getpid()]


def _forked():
    _this_process[0] = os.getpid()


os.register_at_fork(after_in_child=_forked)


class Column:
    """One upstream's counters, as this process writes them."""

    __slots__ = ("_board", "_offset")

    def __init__(self, board, offset):
        self._board = board
        self._offset = offset    # the first cell of this upstream in a row; None: not counted

    def add(self, field, amount=1):
        if self._offset is not None:
            cells, base = self._board.row()
            cells[base + self._offset + FIELDS.index(field)] += amount

    def set_up(self, up):
        if self._offset is not None:
            cells, base = self._board.row()
            cells[base + self._offset + FIELDS.index("state")] = 2 if up else 1


class Board:
    """``processes`` rows of ``columns`` upstreams in one shared mapping."""

    def __init__(self, processes=256, columns=128):
        import multiprocessing

        self.processes = processes
        self.columns = columns
        self._stride = 1 + columns * len(FIELDS)     # the pid, then the columns
        self._map = mmap.mmap(-1, self._stride * processes * _CELL)
        self._cells = memoryview(self._map).cast("Q")
        # Only for claiming a row, once per process; a fork context's lock works across forks.
        self._claim_lock = multiprocessing.get_context("fork").Lock()
        self._names = {}
        self._pid = None
        self._base = None
        self._warned = False

    def column(self, name):
        """The Column of upstream ``name``, given one on first use."""
        number = self._names.get(name)
        if number is None:
            if len(self._names) >= self.columns:
                if not self._warned:
                    self._warned = True
                    log.warning("more than %d upstream names since the start: %s and those "
                                "after it are not counted in the metrics", self.columns, name)
                return Column(self, None)
            number = self._names[name] = len(self._names)
        return Column(self, 1 + number * len(FIELDS))

    def row(self):
        """(cells, the first cell of this process's row), claiming a row on first use."""
        if self._pid != _this_process[0]:
            self._claim()
        return self._cells, self._base

    def _claim(self):
        pid = _this_process[0]
        cells, stride = self._cells, self._stride
        with self._claim_lock:
            free = None
            for number in range(self.processes):
                base = number * stride
                owner = cells[base + _PID]
                if owner == 0 or not _alive(owner):
                    free = base
                    break
            if free is None:
                # Every row belongs to a live process: share the last one (counts may then
                # race; it takes more live processes than any prefork keeps).
                free = (self.processes - 1) * stride
            for column in range(self.columns):
                start = free + 1 + column * len(FIELDS)
                cells[start + FIELDS.index("closed")] = cells[start + FIELDS.index("opened")]
                cells[start + FIELDS.index("state")] = 0
            cells[free + _PID] = pid
        self._pid, self._base = pid, free

    def snapshot(self):
        """{upstream name: {"up", "connections_total", "connections_active",
        "connect_failures_total", "bytes_sent_total", "bytes_received_total"}}, summed over
        every process; "up" is 1 when a live process sees the upstream up, or none has said."""
        cells, stride = self._cells, self._stride
        live = [number * stride for number in range(self.processes)
                if cells[number * stride + _PID] and _alive(cells[number * stride + _PID])]
        everyone = [number * stride for number in range(self.processes)
                    if cells[number * stride + _PID]]
        figures = {}
        for name, number in self._names.items():
            offset = 1 + number * len(FIELDS)

            def total(field, rows=everyone):
                return sum(cells[base + offset + FIELDS.index(field)] for base in rows)

            states = {cells[base + offset + FIELDS.index("state")] for base in live} - {0}
            figures[name] = {
                "up": 0 if states == {1} else 1,
                "connections_total": total("opened"),
                "connections_active": total("opened", live) - total("closed", live),
                "connect_failures_total": total("failures"),
                "bytes_sent_total": total("sent"),
                "bytes_received_total": total("received"),
            }
        return figures


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SERIES = (
    ("up", "gauge", "1 while the upstream takes new connections (its health checks pass), "
                    "else 0."),
    ("connections_total", "counter", "Connections made to the upstream."),
    ("connections_active", "gauge", "Connections open to the upstream now."),
    ("connect_failures_total", "counter",
     "Connects to the upstream that failed (refused, timed out, reset)."),
    ("bytes_sent_total", "counter", "Bytes sent to the upstream (from its clients)."),
    ("bytes_received_total", "counter", "Bytes received from the upstream (for its clients)."),
)


def exposition(figures, names):
    """The Prometheus text of ``figures`` (Board.snapshot()'s) for the upstreams ``names``,
    in that order: cysocketserver_upstream_<figure>{upstream="HOST:PORT"}."""
    lines = []
    for key, kind, help_text in _SERIES:
        metric = "cysocketserver_upstream_" + key
        lines.append("# HELP %s %s" % (metric, help_text))
        lines.append("# TYPE %s %s" % (metric, kind))
        for name in names:
            if name in figures:
                lines.append('%s{upstream="%s"} %d' % (metric, name.replace('"', '\\"'),
                                                       figures[name][key]))
    return "\n".join(lines) + "\n"
