# The one monotonic clock of the compiled modules, and the one cap on a single wait.
#
# monotonic() is the clock time.monotonic() reads (CLOCK_MONOTONIC; CLOCK_UPTIME_RAW on macOS),
# so deadlines made in Python (greenlets.py, the pure twins) and in C compare.  The C side
# lives in platform.h (cys_monotonic & co.), where the streams' ppoll() path uses it too.
from libc.stdint cimport uint64_t

cdef extern from "includes/platform.h" nogil:
    # The longest wait of any epoll_wait()/poll()/ppoll() call, in ms (one day); the pure
    # twins' value is cysocketserver._hubcommon.MAX_WAIT_SECONDS.
    const int MAX_WAIT_MS "CYS_MAX_WAIT_MS"
    # Seconds, as time.monotonic().
    double monotonic "cys_monotonic"() noexcept
    # Nanoseconds of the same clock.
    uint64_t monotonic_ns "cys_monotonic_ns"() noexcept
    # Seconds (negative: no limit) to a wait's milliseconds: rounded up (a wait never ends
    # before its deadline), -1 for no limit, at most MAX_WAIT_MS.
    int timeout_ms "cys_timeout_ms"(double seconds) noexcept
