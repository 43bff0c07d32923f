"""The bounded worker-thread pool (cysocketserver.threadpool), and to_thread() on it."""
import os
import threading
import time

import pytest

from support_net import HAVE_FORK, TIMEOUT, fd_count, wait_for
from support_greenlet import drop_thread_hub

from cysocketserver.threadpool import WorkerPool


@pytest.fixture
def pools():
    made = []

    def make(*args, **kwargs):
        pool = WorkerPool(*args, **kwargs)
        made.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in made:
            pool.shutdown(wait=True, timeout=TIMEOUT)


def blocker(started, release, log=None, value=None):
    def job():
        if log is not None:
            log.append((value, threading.get_ident()))
        started.release()
        assert release.wait(TIMEOUT)
    return job


def test_try_submit_is_bounded_and_never_queues(pools):
    frees = []
    pool = pools(2)
    pool.on_free = lambda: frees.append(threading.get_ident())
    started = threading.Semaphore(0)
    release = threading.Event()
    log = []
    assert pool.try_submit(blocker(started, release, log, 1))
    assert pool.try_submit(blocker(started, release, log, 2))
    for _ in range(2):
        assert started.acquire(timeout=TIMEOUT)
    assert (pool.size, pool.busy, pool.idle) == (2, 2, 0)
    assert pool.try_submit(log.append, "refused") is False
    release.set()
    assert wait_for(lambda: pool.idle == 2)
    assert (pool.size, pool.busy) == (2, 0)
    assert len(frees) == 2  # each thread said it was free, from itself
    assert set(frees) == {ident for _value, ident in log}
    # Reused, not new: the job runs on one of the two threads.
    ran = []
    assert pool.try_submit(lambda: ran.append(threading.get_ident()))
    assert wait_for(lambda: ran)
    assert ran[0] in set(frees)
    assert "refused" not in log


def test_submit_queues_in_order_on_bounded_threads(pools):
    pool = pools(1)
    started = threading.Semaphore(0)
    release = threading.Event()
    order = []
    pool.submit(blocker(started, release))
    assert started.acquire(timeout=TIMEOUT)
    for i in range(20):
        pool.submit(lambda i=i: order.append((i, threading.get_ident())))
    assert pool.size == 1 and order == []
    release.set()
    assert wait_for(lambda: len(order) == 20)
    assert [i for i, _ in order] == list(range(20))
    assert len({ident for _, ident in order}) == 1
    assert pool.size == 1


def test_idle_threads_exit(pools):
    pool = pools(3, idle_timeout=0.1)
    started = threading.Semaphore(0)
    release = threading.Event()
    before = threading.active_count()
    for _ in range(3):
        pool.submit(blocker(started, release))
    for _ in range(3):
        assert started.acquire(timeout=TIMEOUT)
    assert threading.active_count() == before + 3
    release.set()
    assert wait_for(lambda: pool.size == 0)
    assert wait_for(lambda: threading.active_count() == before)
    # And the pool starts threads again when there is work.
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(TIMEOUT)


def test_a_job_exception_never_ends_the_worker(pools, capfd):
    pool = pools(1)
    idents = []

    def fails():
        idents.append(threading.get_ident())
        raise ZeroDivisionError("in a job")

    def exits():
        idents.append(threading.get_ident())
        raise SystemExit(3)

    pool.submit(fails)
    pool.submit(exits)
    done = threading.Event()
    pool.submit(lambda: (idents.append(threading.get_ident()), done.set()))
    assert done.wait(TIMEOUT)
    assert len(idents) == 3 and len(set(idents)) == 1
    err = capfd.readouterr().err
    assert "ZeroDivisionError: in a job" in err
    assert "SystemExit" not in err  # as a thread's SystemExit: silent


def test_an_on_free_exception_is_reported_and_the_worker_goes_on(pools, capfd):
    pool = pools(1)
    calls = []

    def on_free():
        calls.append(1)
        raise ZeroDivisionError("in on_free")

    pool.on_free = on_free
    done = threading.Semaphore(0)
    pool.submit(done.release)
    assert done.acquire(timeout=TIMEOUT)
    assert wait_for(lambda: len(calls) == 1)
    pool.submit(done.release)
    assert done.acquire(timeout=TIMEOUT)
    assert wait_for(lambda: len(calls) == 2)
    assert pool.size == 1
    assert "ZeroDivisionError: in on_free" in capfd.readouterr().err


def test_shutdown(pools):
    pool = pools(2)
    started = threading.Semaphore(0)
    release = threading.Event()
    ran = []
    pool.submit(blocker(started, release))
    pool.submit(lambda: ran.append("idle soon"))
    assert wait_for(lambda: pool.idle == 1)
    pool.submit(blocker(started, release))
    pool.submit(lambda: ran.append("queued"))
    assert started.acquire(timeout=TIMEOUT) and started.acquire(timeout=TIMEOUT)
    start = time.monotonic()
    pool.shutdown(wait=True, timeout=0.2)  # the jobs are still blocked: it gives up waiting
    assert 0.15 < time.monotonic() - start < 5
    assert pool.try_submit(ran.append, "late") is False
    with pytest.raises(RuntimeError):
        pool.submit(ran.append, "late")
    release.set()
    assert wait_for(lambda: pool.size == 0)
    assert ran == ["idle soon", "queued"]  # what was queued before shutdown() still ran
    pool.shutdown()  # twice is fine


def test_bad_size():
    with pytest.raises(ValueError):
        WorkerPool(0)


@pytest.mark.skipif(not HAVE_FORK, reason="needs fork()")
# Forking while the pool's threads run is the point (Python 3.12+ warns about it).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_the_child_of_fork_starts_with_an_empty_pool(pools):
    pool = pools(2)
    started = threading.Semaphore(0)
    release = threading.Event()
    pool.submit(blocker(started, release))
    assert started.acquire(timeout=TIMEOUT)
    pool.submit(lambda: None)  # a second thread, idle or soon idle
    assert wait_for(lambda: pool.size == 2)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            counts = (pool.size, pool.busy, pool.idle)
            done = threading.Event()
            pool.submit(done.set)
            ok = counts == (0, 0, 0) and done.wait(5) and pool.size == 1
            os.write(write_fd, b"%r %r" % (counts, ok))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as f:
        report = f.read()
    release.set()
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == b"(0, 0, 0) True"
    assert wait_for(lambda: pool.idle == 2)  # the parent's pool is untouched


# --------------------------------------------------------------------------- to_thread


pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402
import cysocketserver.greenlets as greenlets  # noqa: E402


@pytest.fixture(params=["compiled", "python"])
def hub_engine(request, monkeypatch):
    """to_thread() from greenlets on a hub of the engine under test, made for this test."""
    from cysocketserver import _engine

    if not _engine.available(request.param):
        pytest.skip(f"the {request.param} engine is not built in this install")
    drop_thread_hub()
    try:
        with _engine.use(request.param):
            yield greenlets.get_hub()
    finally:
        drop_thread_hub()


def _to_thread_threads():
    return sum(1 for t in threading.enumerate() if t.name.startswith("test-to_thread"))


def test_default_to_thread_pool_size():
    if os.environ.get(greenlets.TO_THREAD_ENV):
        pytest.skip("the size is set in the environment")
    assert greenlets.TO_THREAD_MAX_THREADS == min(32, (os.cpu_count() or 1) + 4)


@pytest.mark.parametrize("max_threads", [None, 5])
def test_thousand_concurrent_calls_use_a_bounded_pool(hub_engine, monkeypatch, max_threads):
    if max_threads is not None:
        monkeypatch.setattr(greenlets, "TO_THREAD_MAX_THREADS", max_threads)
    limit = greenlets.TO_THREAD_MAX_THREADS
    peak = [0]
    results = {}

    def blocking(i):
        peak[0] = max(peak[0], _to_thread_threads())
        time.sleep(0.001)
        return i * 2, threading.get_ident()

    def caller(i):
        results[i] = greenlets.to_thread(blocking, i)

    # A pool of this test's own (named apart), so that only its threads are counted.
    pool = WorkerPool(limit, name="test-to_thread")
    monkeypatch.setattr(greenlets, "_to_thread_pool", pool)
    before = threading.active_count()
    for i in range(1000):
        hub_engine.spawn(caller, i)
    deadline = time.monotonic() + 60
    while len(results) < 1000 and time.monotonic() < deadline:
        greenlets.sleep(0.01)
    assert sorted(results) == list(range(1000))
    assert all(results[i][0] == i * 2 for i in results)
    workers = {ident for _value, ident in results.values()}
    assert threading.get_ident() not in workers
    assert len(workers) <= limit
    assert peak[0] <= limit
    assert threading.active_count() <= before + limit
    print(f"\n1000 concurrent to_thread() calls: {len(workers)} worker threads "
          f"(limit {limit}), at most {peak[0]} alive at once")
    pool.shutdown(wait=True, timeout=TIMEOUT)


def test_to_thread_without_a_hub_runs_in_the_calling_thread():
    # A threaded server's handler, say: no hub is made (no descriptors), and nothing to wait on.
    outcome = []

    def plain_thread():
        before = fd_count()
        value = greenlets.to_thread(lambda: threading.get_ident())
        outcome.append((value == threading.get_ident(), greenlets._existing_hub() is None,
                        fd_count() - before))
        try:
            greenlets.to_thread(int, "not a number")
        except ValueError:
            outcome.append("raised")

    t = threading.Thread(target=plain_thread)
    t.start()
    t.join(TIMEOUT)
    assert outcome == [(True, True, 0), "raised"]


def test_to_thread_exceptions_and_kwargs(hub_engine):
    def work(a, *, b):
        if a < 0:
            raise KeyError(a)
        return a + b

    assert greenlets.to_thread(work, 1, b=2) == 3
    with pytest.raises(KeyError):
        greenlets.to_thread(work, -1, b=0)
