"""Which of a server's hooks are this package's own.

The engines take a native path (an accept batch in C, a handler run without the frames of
process_request() and finish_request()) only where a hook is left as the package defines it.
The package marks its hooks with the decorators below; a subclass or an instance attribute
that replaces one is unmarked, and is then called as the stdlib would call it.
"""
__all__ = ["default_hook", "noop_hook", "in_request_context", "is_default", "is_noop",
           "runs_in_request_context"]


def default_hook(func):
    """Mark a hook as this package's own: where a server still has it, the engine may do its work
    natively.  A subclass (or an instance attribute) that replaces it is called instead."""
    func._cysocketserver_default = True
    return func


def noop_hook(func):
    """Mark one of this package's hooks that does nothing, so that it need not be called."""
    func._cysocketserver_noop = True
    return default_hook(func)


def in_request_context(func):
    """Mark a concurrency mix-in's process_request() or the function it runs in the request's
    own thread or greenlet (process_request_thread...), as running the request through
    ``admission.serve_request``: the PROXY header can then be read there, off the serving
    loop."""
    func._cysocketserver_in_context = True
    return func


def _hook_function(server, name):
    return getattr(getattr(server, name, None), "__func__", None)


def is_default(server, name):
    """Whether ``server.<name>`` (even one patched on the instance) is this package's own."""
    return getattr(_hook_function(server, name), "_cysocketserver_default", False) is True


def is_noop(server, name):
    """Whether ``server.<name>`` is this package's own hook that does nothing."""
    return getattr(_hook_function(server, name), "_cysocketserver_noop", False) is True


def runs_in_request_context(server, name):
    """Whether ``server.<name>`` is marked ``in_request_context`` (and not replaced)."""
    return getattr(_hook_function(server, name), "_cysocketserver_in_context", False) is True
