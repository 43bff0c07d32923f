# greenlet's C API (includes/greenlet_api.h), for the compiled hub: switching, throwing and
# making greenlets without a Python-level call.  greenlet_import() must have succeeded before
# any other function is called.  Errors follow the convention of errors.pxd: NULL (an
# exception) for objects, -1 for ints.
from cpython.object cimport PyObject

cdef extern from "includes/greenlet_api.h":
    int greenlet_import "cys_greenlet_import"() except -1
    object greenlet_getcurrent "cys_greenlet_getcurrent"()
    object greenlet_new "cys_greenlet_new"(object run, object parent)
    # args: a tuple of what to switch in, or NULL for nothing.
    object greenlet_switch "cys_greenlet_switch"(object g, PyObject *args)
    object greenlet_throw "cys_greenlet_throw"(object g, object exc)
    int greenlet_dead "cys_greenlet_dead"(object g) except -1
    # NULL, with no exception, for a greenlet without a parent.
    PyObject *greenlet_parent "cys_greenlet_parent"(object g)
