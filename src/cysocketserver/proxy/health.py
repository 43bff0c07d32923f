"""Health checks: every interval, each upstream is checked at once (a task each), by a TCP
connect -- or, with a send string, by sending it and waiting for the expect string.  A check
lasts at most the connect timeout (and never longer than the interval).

``run()`` loops until killed.  On a greenlet server it is a task on the serving hub, so a slow
check parks, never blocks the serving loop; on a threading server it runs in a thread of its
own, with a hub of its own for its checks.  Each round also writes every upstream's state into
the counters, which is how the process serving --metrics learns it.
"""
import cysocketserver

__all__ = ["check", "run"]

# How often the loop looks again while checks are off (a reload may turn them on).
_IDLE_LOOK = 1.0


def check(upstream, settings):
    """None if ``upstream`` passes a check under ``settings``, else what went wrong."""
    limit = settings.connect_timeout
    if settings.health_check_interval:
        limit = min(limit, settings.health_check_interval)
    try:
        with cysocketserver.connect(upstream.address, timeout=limit) as sock:
            if settings.health_check_send is not None:
                sock.sendall(settings.health_check_send)
            expect = settings.health_check_expect
            if expect is None:
                return None
            received = b""
            while expect not in received:
                data = sock.recv(4096)
                if not data:
                    return "closed before sending %r" % expect
                received = (received + data)[-max(len(expect), 4096) * 2:]
            return None
    except TimeoutError:
        return "timed out after %g s" % limit
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _check_and_record(upstream, settings):
    problem = check(upstream, settings)
    if problem is None:
        upstream.succeeded(settings.rise)
    else:
        upstream.failed(settings.fall, "check: " + problem)


def run(current):
    """Check the upstreams of ``current()`` (the server's ProxyState now) for ever."""
    while True:
        state = current()
        settings = state.settings
        if settings.health_check_interval:
            tasks = [cysocketserver.spawn(_check_and_record, upstream, settings)
                     for upstream in state.upstreams]
            try:
                for task in tasks:
                    task.join()
            finally:
                for task in tasks:
                    task.kill()
        for upstream in state.upstreams:
            upstream.counters.set_up(upstream.up)
        cysocketserver.sleep(settings.health_check_interval or _IDLE_LOOK)
