/* greenlet's C API, declared from the layout its greenlet.h documents, so that building needs
 * no greenlet headers (the wheels do not always ship them): the module "greenlet" holds a
 * capsule "greenlet._C_API" whose pointer is a table of void* (12 entries since greenlet 2,
 * which "does not change"), indexed as below.  The functions are greenlet's own: each checks
 * that it is given a greenlet, and returns NULL (or -1) with an exception set on failure.
 * Only cysocketserver._hub includes this header. */
#ifndef CYS_GREENLET_API_H
#define CYS_GREENLET_API_H

#include <Python.h>

enum {
    CYS_GREENLET_TYPE = 0,
    CYS_GREENLET_ERROR = 1,
    CYS_GREENLET_EXIT = 2,
    CYS_GREENLET_NEW = 3,
    CYS_GREENLET_GETCURRENT = 4,
    CYS_GREENLET_THROW = 5,
    CYS_GREENLET_SWITCH = 6,
    CYS_GREENLET_SETPARENT = 7,
    CYS_GREENLET_MAIN = 8,
    CYS_GREENLET_STARTED = 9,
    CYS_GREENLET_ACTIVE = 10,
    CYS_GREENLET_GET_PARENT = 11
};

static void **cys_greenlet_api = NULL;

/* 0, or -1 with ImportError/AttributeError set (greenlet missing, or too old to have it). */
static int
cys_greenlet_import(void)
{
    cys_greenlet_api = (void **)PyCapsule_Import("greenlet._C_API", 0);
    return cys_greenlet_api == NULL ? -1 : 0;
}

/* greenlet.getcurrent(): a new reference. */
static inline PyObject *
cys_greenlet_getcurrent(void)
{
    return ((PyObject *(*)(void))cys_greenlet_api[CYS_GREENLET_GETCURRENT])();
}

/* greenlet.greenlet(run, parent): a new reference; parent NULL: the current greenlet. */
static inline PyObject *
cys_greenlet_new(PyObject *run, PyObject *parent)
{
    return ((PyObject *(*)(PyObject *, PyObject *))cys_greenlet_api[CYS_GREENLET_NEW])(run, parent);
}

/* g.switch(*args): what is switched back, a new reference.  args NULL: no arguments. */
static inline PyObject *
cys_greenlet_switch(PyObject *g, PyObject *args)
{
    return ((PyObject *(*)(PyObject *, PyObject *, PyObject *))
            cys_greenlet_api[CYS_GREENLET_SWITCH])(g, args, NULL);
}

/* g.throw(exc): raise exc (an exception instance) in g; what is switched back, a new
   reference. */
static inline PyObject *
cys_greenlet_throw(PyObject *g, PyObject *exc)
{
    return ((PyObject *(*)(PyObject *, PyObject *, PyObject *, PyObject *))
            cys_greenlet_api[CYS_GREENLET_THROW])(g, exc, NULL, NULL);
}

/* g.dead: started and no longer active.  1, 0, or -1 with an exception set. */
static inline int
cys_greenlet_dead(PyObject *g)
{
    int started = ((int (*)(PyObject *))cys_greenlet_api[CYS_GREENLET_STARTED])(g);
    int active;
    if (started <= 0) {
        return started;
    }
    active = ((int (*)(PyObject *))cys_greenlet_api[CYS_GREENLET_ACTIVE])(g);
    return active < 0 ? -1 : !active;
}

/* g.parent: a new reference, or NULL (with no exception set for a greenlet without one). */
static inline PyObject *
cys_greenlet_parent(PyObject *g)
{
    return ((PyObject *(*)(PyObject *))cys_greenlet_api[CYS_GREENLET_GET_PARENT])(g);
}

#endif /* CYS_GREENLET_API_H */
