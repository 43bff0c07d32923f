# The error convention of the compiled modules' cdef functions, and its one helper.
#
# - A cdef function that can fail returns an int: 0 (or a non-negative count) on success, -1
#   with a Python exception set.  It is declared ``except -1``, so Cython checks the -1 and
#   nothing else.  ``bint`` results that can fail are ``except -1`` too.
# - Where -1 is a valid result (a Py_ssize_t that can be -1, a double), the function says so
#   in its declaration with ``except? <sentinel>`` and its comment names the sentinel.
# - A failed system call becomes OSError (the subclass errno picks, strerror's message, as the
#   socket module raises it) through ``return raise_errno(err)``, with errno saved right after
#   the call (the GIL is usually re-taken in between).  Never call PyErr_SetFromErrno() and
#   carry on.
# - A function that cannot fail is ``noexcept`` (and ``nogil`` when it touches no Python
#   object); one that returns an object returns NULL (Cython's default) on error.
cimport libc.errno
from cpython.exc cimport PyErr_SetFromErrno


cdef inline int raise_errno(int err) except -1:
    """Raise the OSError for err; always returns -1 (so: ``return raise_errno(err)``)."""
    libc.errno.errno = err
    PyErr_SetFromErrno(OSError)
    return -1
