# The C types of the ClientHello parser, _clienthello.py, when setup.py compiles it with Cython
# (pure Python mode: this file is read only by the compiler; the .py runs unchanged without it).
# Typed `bytes` are indexed in C.
import cython

# MAX_HANDSHAKE and MAX_RECORDS stay Python names: they are public.
cdef Py_ssize_t _RECORD_HEADER, _HANDSHAKE_HEADER, _MAX_FRAGMENT
cdef int _CONTENT_HANDSHAKE, _CLIENT_HELLO, _EXTENSION_SERVER_NAME, _HOST_NAME

@cython.locals(size=Py_ssize_t, position=Py_ssize_t, records=Py_ssize_t, handshake=bytes,
               total=Py_ssize_t, length=Py_ssize_t, before=Py_ssize_t, start=Py_ssize_t,
               useful=Py_ssize_t)
cdef tuple _server_name(bytes raw, Py_ssize_t limit)

cdef int _check_record(bytes raw, Py_ssize_t position, Py_ssize_t size) except -1

cdef Py_ssize_t _length3(bytes raw, Py_ssize_t at)

@cython.locals(at=Py_ssize_t, stop=Py_ssize_t, kind=int, size=Py_ssize_t)
cdef _parse(bytes hello, Py_ssize_t end)

@cython.locals(kind=int, size=Py_ssize_t)
cdef _host_name(bytes hello, Py_ssize_t at, Py_ssize_t stop)
