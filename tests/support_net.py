"""Small, bounded helpers shared by the behavioural tests.

Everything here has a timeout: a test that would hang fails instead.
"""
import contextlib
import importlib.util
import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
TIMEOUT = 10.0  # generous upper bound for any single wait in a test

HAVE_UNIX = hasattr(socket, "AF_UNIX")
HAVE_FORK = hasattr(os, "fork")


def wait_for(predicate, timeout=TIMEOUT, interval=0.005):
    """Poll ``predicate`` until it is true; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def join_or_fail(thread, timeout=TIMEOUT, what="thread"):
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{what} still running after {timeout}s")


def bounded_shutdown(server, timeout=TIMEOUT):
    """Call ``server.shutdown()`` but fail instead of blocking forever."""
    t = threading.Thread(target=server.shutdown, daemon=True)
    t.start()
    join_or_fail(t, timeout, "server.shutdown()")


def start_thread(target, *args, **kwargs):
    t = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
    t.start()
    return t


@contextlib.contextmanager
def serving(server, poll_interval=0.02, close=True):
    """Run ``server.serve_forever`` in a thread for the duration of the block."""
    errors = []

    def run():
        try:
            server.serve_forever(poll_interval=poll_interval)
        except BaseException as exc:  # surfaced in the test, not swallowed
            errors.append(exc)

    t = start_thread(run)
    try:
        yield server
    finally:
        try:
            bounded_shutdown(server)
            join_or_fail(t, what="serve_forever thread")
        finally:
            if close:
                server.server_close()
    if errors:
        raise AssertionError(f"serve_forever raised {errors[0]!r}") from errors[0]


def connect(address, family=socket.AF_INET, timeout=TIMEOUT):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(address)
    except BaseException:
        s.close()
        raise
    return s


def recv_until_eof(sock, limit=1 << 30):
    chunks = []
    total = 0
    while total < limit:
        data = sock.recv(1 << 16)
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


def request_reply(address, payload, family=socket.AF_INET, timeout=TIMEOUT):
    """Send ``payload``, half-close, and read the reply until EOF."""
    with connect(address, family, timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return recv_until_eof(s)


def reset_close(sock):
    """Close with SO_LINGER 0: the peer sees a RST instead of a FIN."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def package_root():
    """Directory that holds the ``cysocketserver`` package (for subprocess PYTHONPATH)."""
    spec = importlib.util.find_spec("cysocketserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))


def subprocess_env(**extra):
    """Environment for a child interpreter that can import cysocketserver.

    ``extra`` overrides variables; a value of None removes the variable.
    """
    env = dict(os.environ)
    paths = [p for p in (package_root(), os.path.dirname(os.path.abspath(__file__))) if p]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def python():
    return sys.executable


def test_certificate(workdir):
    """A PEM file with a self-signed certificate and its key, or None.

    Prefers the one CPython's test package ships; otherwise makes one with openssl.
    """
    try:
        import test

        base = os.path.dirname(test.__file__)
        for rel in ("certdata/keycert.pem", "keycert.pem"):
            path = os.path.join(base, rel)
            if os.path.exists(path):
                return path
    except ImportError:
        pass
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if not openssl:
        return None
    key = os.path.join(workdir, "key.pem")
    cert = os.path.join(workdir, "cert.pem")
    proc = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
        capture_output=True,
        timeout=60,
    )
    if proc.returncode != 0:
        return None
    both = os.path.join(workdir, "keycert.pem")
    with open(both, "wb") as out:
        for part in (key, cert):
            with open(part, "rb") as f:
                out.write(f.read())
    return both
