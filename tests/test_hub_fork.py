"""Fork-safe hubs: after fork() the child gets a hub of its own, never the parent's.

The hub's epoll set and wake-up descriptor would otherwise be shared: the two processes would
take each other's readiness events, and one's epoll_ctl() would change the other's interest
set.  Each scenario runs in a child interpreter on the engine under test.
"""
import json
import os
import subprocess
import sys

import pytest

from support_net import HAVE_FORK, subprocess_env

pytest.importorskip("greenlet")

import cysocketserver  # noqa: E402

pytestmark = pytest.mark.skipif(not HAVE_FORK, reason="needs fork()")

SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support_hub.py")
ENGINE_ENV = {"compiled": {"CYSOCKETSERVER_NO_EXTENSIONS": None},
              "python": {"CYSOCKETSERVER_NO_EXTENSIONS": "1"}}


@pytest.fixture(params=["compiled", "python"])
def engine_env(request):
    if request.param == "compiled" and cysocketserver.IMPLEMENTATION != "compiled":
        pytest.skip("the compiled engine is not in use")
    return ENGINE_ENV[request.param]


def run_role(env, *args, timeout=90):
    try:
        proc = subprocess.run([sys.executable, SUPPORT, *args], env=subprocess_env(**env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} hung for {timeout}s:\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-20000:]}"
    tag = {"fork-hub": "FORK", "forking-server": "FORKING",
           "fork-in-greenlet": "GREENLET-FORK"}[args[0]]
    line = [x for x in proc.stdout.splitlines() if x.startswith(tag + " ")]
    assert line, proc.stdout + proc.stderr
    return json.loads(line[-1].split(" ", 1)[1])


def test_parent_and_child_each_keep_a_working_hub(engine_env):
    # The parent used get_hub(), sleep() and connect(), then forked; both go on using
    # sleep() and connect() in eight greenlets at once, and a connection made before the fork.
    result = run_role(engine_env, "fork-hub")
    assert result["child"] == {"fresh_hub": True, "errors": []}
    assert result["child_status"] == 0
    assert result["parent_hub_kept"] is True
    assert result["errors"] == []


@pytest.mark.parametrize("kind", ["threaded"])
def test_forking_servers_whose_handlers_use_the_hub(engine_env, kind):
    # ForkingTCPServer after its parent used the hub: each request is served in a child of its
    # own, whose handler sleeps and connects on a hub of its own.  Before, the children shared
    # the parent's epoll set and most clients hung.  ((ForkingMixIn, GreenletTCPServer) is
    # refused when the class is defined: a server runs its requests one way; test_core.py.)
    result = run_role(engine_env, "forking-server", kind)
    assert result["errors"] == []
    assert result["served"] == 20 and result["forked"] and result["processes"] == 20
    assert result["max_seconds"] < 10


def test_a_greenlet_that_forks_and_returns_ends_the_child(engine_env):
    # In the child, the parent's other greenlets never run; the child ends as a thread that
    # forked and returned would.
    result = run_role(engine_env, "fork-in-greenlet")
    assert result["lines"] == ["forker returned in the child",
                               "other greenlet ran in %d" % result["parent"]]
    assert result["child_exit"] == 0
