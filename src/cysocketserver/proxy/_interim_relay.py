"""TEMPORARY: a two-task copy loop standing in for cysocketserver.relay() until it lands."""
import socket
import threading
from time import monotonic

import cysocketserver
from cysocketserver.green.hub import existing_hub


def relay(a, b, *, idle_timeout=None):
    last = [monotonic()]
    counts = [0, 0]
    slice_ = min(idle_timeout, 1.0) if idle_timeout else 1.0

    def pipe(source, destination, index):
        try:
            source.settimeout(slice_)
            while True:
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    if idle_timeout and monotonic() - last[0] >= idle_timeout:
                        break
                    continue
                if not data:
                    destination.shutdown(socket.SHUT_WR)
                    return
                last[0] = monotonic()
                destination.sendall(data)
                counts[index] += len(data)
        except OSError:
            pass
        for sock in (a, b):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    if existing_hub() is not None:
        back = cysocketserver.spawn(pipe, b, a, 1)
        try:
            pipe(a, b, 0)
            back.join()
        finally:
            back.kill()
    else:
        back = threading.Thread(target=pipe, args=(b, a, 1), daemon=True)
        back.start()
        pipe(a, b, 0)
        back.join()
    return counts[0], counts[1]
