"""``python -m cysocketserver bench``: the stdlib's socketserver and this package, side by side.

For every workload the same handler code is served by the stdlib's ``socketserver`` and by
``cysocketserver``, each in a process of its own (``server.py``), and driven in turn by
the compiled load client (``cysocketserver._loadgen``) from this process: rounds A B A B ..., each with a
short warm-up that is not counted.  The table gives the medians, and the ratio of each round's
rates with its spread over the rounds (``ratios.py``).

The proxy rows run relays instead of echo servers, in front of a C echo server started for the
row; HAProxy and the proxy command join them as further columns (``relays.py``).

Everything is bounded: each round stops by itself, every server process is killed at the end
(also on Ctrl-C and on errors), and the servers leave by themselves if this process dies.
"""
import argparse
import contextlib
import ctypes
import importlib.util
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from . import relays, report
from .ratios import ratio_spread
from .workloads import DEFAULT, HTTP_BODY, WORKLOADS, by_name

__all__ = ["build_parser", "finish_options", "implementations", "main", "run", "run_benchmark"]

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")
PEERS = ("asyncio", "uvloop", "gevent")
START_TIMEOUT = 20.0
SETTLE = 0.1          # seconds between two rounds, for the server's threads to wind down
DRAIN = 1.0           # seconds at most for the requests under way when a round ends


def log(message):
    print(message, file=sys.stderr, flush=True)


# -- server processes ---------------------------------------------------------------------------

def package_environment():
    """The environment for a server process: it must import this very package (and nothing
    from its own folder)."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("PYTHONSTARTUP", None)
    return env


def read_back(stream):
    """What a server wrote to its stderr file so far."""
    try:
        stream.seek(0)
        return stream.read().decode(errors="replace")
    except (OSError, ValueError):
        return ""


def child_setup(cpus):
    """Runs in a server's process before exec: its CPUs (inherited by what it forks), and
    SIGTERM to it when this process dies, however it dies."""
    def setup():
        if cpus:
            os.sched_setaffinity(0, cpus)
        with contextlib.suppress(Exception):
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return setup


def free_port(host):
    """A port nobody listens on now, for a server that cannot bind port 0 and say which it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def child_pids(pid):
    """A process's children (a prefork parent's workers), from every thread's children list."""
    pids = set()
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    pids.update(int(p) for p in f.read().split())
    return sorted(pids)


def _stat_times(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # utime, stime, cutime, cstime (fields 14-17 of proc(5); 0-based 11-14 after the name)
    return [int(x) for x in fields[11:15]]


def process_cpu_seconds(pid):
    """User + system CPU time of a process and its children so far (Linux; None elsewhere):
    children that ended and were reaped are in its cutime/cstime."""
    try:
        total = sum(_stat_times(pid))
    except (OSError, ValueError, IndexError):
        return None
    for child in child_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += sum(_stat_times(child)[:2])
    return total / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """One server in its own process (and session); stop() always gets rid of it.

    Ours (server.py) bind port 0 and say which port they got; the other relays of the proxy
    rows (relays.PROXIES) are given a free port and are ready when it accepts.  upstream: the
    port of the echo server a relay forwards to.
    """

    def __init__(self, impl, workload, host, cpus, max_seconds, upstream=None):
        self.impl = impl
        self.workload = workload
        self.stderr = tempfile.TemporaryFile()
        self.folder = None
        self.port = None
        self.engine = None
        if impl in relays.PROXIES:
            self.folder = tempfile.mkdtemp(prefix="bench-proxy-")
            self.port = free_port(host)
            cmd = relays.command(impl, host, self.port, upstream, self.folder)
            cpus = parse_cpus(cpus) if cpus else None
        else:
            # The upstream of the proxy rows is the C server, which echoes whatever it gets.
            handler = "raw" if impl == "reference" and workload.proxy else workload.handler
            cmd = [sys.executable, RUNNER, "--impl", impl, "--server", workload.server,
                   "--handler", handler, "--host", host, "--max-seconds", f"{max_seconds:.0f}"]
            if cpus:
                cmd += ["--cpus", cpus]
            if workload.mode == "http":
                cmd += ["--http-body", HTTP_BODY]
            if upstream is not None:
                cmd += ["--upstream", str(upstream)]
            cpus = None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=package_environment(),
                                     start_new_session=True, preexec_fn=child_setup(cpus))
        try:
            if self.port is None:
                info = self._read_announcement()
                self.port = info["port"]
                self.engine = info.get("engine", impl)
            else:
                self._wait_until_accepting(host)
                self.engine = impl
        except BaseException:
            self.stop()
            raise

    def _wait_until_accepting(self, host):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection((host, self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.impl} did not start:\n"
                                       f"{self.error_text()[-2000:]}") from None
                time.sleep(0.05)

    def _read_announcement(self):
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.impl} server did not start within {START_TIMEOUT:.0f} s")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                line += chunk
            elif self.proc.poll() is not None:
                break
        try:
            return json.loads(line.decode())
        except ValueError:
            # Let a dying server finish writing its traceback before we show it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
            raise RuntimeError(f"{self.impl} server failed to start:\n{self.error_text()[-2000:]}")

    def alive(self):
        return self.proc.poll() is None

    def cpu_seconds(self):
        """User + system CPU time of the server so far, its worker processes included."""
        return process_cpu_seconds(self.proc.pid)

    def error_text(self):
        return read_back(self.stderr)

    def stop(self):
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # Its own session: the group holds the server and anything it forked.  The
                # proxy command drains on SIGTERM; SIGINT stops it (and HAProxy) at once.
                os.killpg(proc.pid, signal.SIGINT if self.folder else signal.SIGTERM)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


class ServerPool:
    """Every server started, so that all of them are stopped whatever happens."""

    def __init__(self):
        self.servers = []

    def start(self, *args, **kwargs):
        server = ServerProcess(*args, **kwargs)
        self.servers.append(server)
        return server

    def stop(self, server):
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self):
        while self.servers:
            self.servers.pop().stop()


# -- machine ------------------------------------------------------------------------------------

def machine_info():
    info = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    with contextlib.suppress(AttributeError, OSError):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(AttributeError, OSError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    return info


def available_peers():
    found, missing = [], []
    for name in PEERS:
        (found if importlib.util.find_spec(name) is not None else missing).append(name)
    return found, missing


def parse_cpus(text):
    cpus = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    if not cpus:
        raise ValueError(f"no CPUs in {text!r}")
    return cpus


# -- the benchmark ------------------------------------------------------------------------------

def summarize(rounds):
    """Medians over the rounds of one implementation on one workload."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return {"rounds": 0}
    lat = [r["latency_us"] for r in ok if r["latency_us"].get("samples")]

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    errors = {}
    for r in ok:
        for name, count in r["errors"].items():
            if count:
                errors[name] = errors.get(name, 0) + count
    return {
        "rounds": len(ok),
        "rate": med(r["rate"] for r in ok),
        "mb_per_s": med(r["mb_per_s"] for r in ok),
        "rate_min": min(r["rate"] for r in ok),
        "rate_max": max(r["rate"] for r in ok),
        "p50_us": med(x.get("p50") for x in lat),
        "p99_us": med(x.get("p99") for x in lat),
        "p99.9_us": med(x.get("p99.9") for x in lat),
        "server_cores": med(r.get("server_cores") for r in ok),
        # What one request costs the server, whatever share of the cores it got.
        "server_cpu_us": med(r["server_cores"] / r["rate"] * 1e6 for r in ok
                             if r.get("server_cores") is not None and r["rate"]),
        "client_cores": med(r.get("client_cores") for r in ok),
        "errors": errors,
    }


def run_one(server, workload, opts):
    """One round against one server: the load client's result plus CPU use on both sides."""
    from .. import _loadgen

    extra = {"expect": HTTP_BODY.encode()} if workload.mode == "http" else {}
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu0 = server.cpu_seconds()
    wall0 = time.monotonic()
    result = _loadgen.run(
        workload.mode, opts.host, server.port, connections=workload.connections,
        size=workload.size, duration=opts.duration, warmup=opts.warmup,
        max_requests=opts.max_requests, drain=DRAIN, **extra)
    wall = time.monotonic() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu1 = server.cpu_seconds()
    result["client_cores"] = ((usage1.ru_utime + usage1.ru_stime)
                              - (usage0.ru_utime + usage0.ru_stime)) / wall
    if server_cpu0 is not None and server_cpu1 is not None:
        result["server_cores"] = (server_cpu1 - server_cpu0) / wall
    return result


def describe_round(impl, result, workload):
    if "error" in result:
        return f"{impl:<15} failed: {result['error']}"
    rate = (f"{result['mb_per_s']:9.1f} MB/s" if workload.unit == "MB/s"
            else f"{result['rate']:9,.0f} req/s")
    text = f"{impl:<15} {rate}  p99 {report.fmt_us(result['latency_us'].get('p99'))}"
    if result.get("server_cores") is not None:
        text += f"  server {result['server_cores']:.2f} cores"
    text += f"  client {result['client_cores']:.2f} cores"
    if result["error_total"]:
        errors = ", ".join(f"{k} {v}" for k, v in result["errors"].items() if v)
        text += f"  errors: {errors}"
    return text


def ratios_of(entry):
    """Every server's per-round ratio to the stdlib (and ours to the C reference), summed up
    for the --json file."""
    found = {}
    for impl in entry["implementations"]:
        if impl != "stdlib":
            spread = ratio_spread(entry, impl)
            if spread is not None:
                found[impl] = spread.as_dict()
    to_limit = ratio_spread(entry, "cysocketserver", base="reference")
    if to_limit is not None:
        found["cysocketserver/reference"] = to_limit.as_dict()
    return found


def estimated_seconds(opts, servers):
    """About how long a run takes with this many server processes in all (each takes a few
    tenths of a second to start)."""
    return servers * (opts.rounds * (opts.warmup + opts.duration + SETTLE) + 0.3)


def implementations(workload, opts, peers, proxies):
    """Who serves the workload: the peers and the C reference server only echo, the proxies
    only relay."""
    impls = ["stdlib", "cysocketserver"]
    if workload.proxy:
        impls += proxies
    elif workload.echo:
        impls += peers
        if opts.reference or workload.reference:
            impls.append("reference")
    return impls


def run_benchmark(opts, machine=None):
    """Run every workload of opts; returns the results as the --json file has them.

    machine: machine_info() taken before this process pinned itself, if it did.
    """
    notes = []
    peers = []
    if opts.peers:
        peers, missing = available_peers()
        for name in missing:
            notes.append(f"{name}: not installed, skipped")
    workloads = [by_name(name) for name in opts.workload]
    proxies = []
    if any(w.proxy for w in workloads):
        proxies, missing = relays.available(opts.proxies)
        notes += missing

    def impls_for(workload):
        return implementations(workload, opts, peers, proxies)

    impls = list(dict.fromkeys(i for w in workloads for i in impls_for(w)))
    if any(w.mode == "http" for w in workloads):
        notes.append("http rows: the load client's HTTP/1.1 keep-alive mode (a fixed GET; the "
                     "status, Content-Length and body of every response checked); wrk is not used")
    per_round = opts.warmup + opts.duration + DRAIN + SETTLE + 2.0
    budget = len(workloads) * len(impls) * (opts.rounds * per_round + START_TIMEOUT) + 60
    from .. import _loadgen

    servers = sum(len(impls_for(w)) for w in workloads)
    log(f"{len(workloads)} workload(s), {servers} server processes, {opts.rounds} round(s) each: "
        f"about {estimated_seconds(opts, servers):.0f} s")
    if getattr(opts, "quick", False):
        log("--quick is a smoke test that everything runs: its figures are not results")

    results = {
        "machine": machine or machine_info(),
        "settings": {
            "duration": opts.duration, "warmup": opts.warmup, "rounds": opts.rounds,
            "quick": getattr(opts, "quick", False),
            "max_requests": opts.max_requests, "host": opts.host,
            "client_cpu": opts.client_cpu, "server_cpu": opts.server_cpu,
            "implementations": impls, "load_client": f"cysocketserver._loadgen ({_loadgen.BACKEND})",
            "listen_backlog": 128,
        },
        "engines": {},
        "notes": notes,
        "workloads": [],
    }
    pool = ServerPool()
    try:
        for index, workload in enumerate(workloads, 1):
            tag = f"[{index}/{len(workloads)}] {workload.name}"
            log(f"{tag}: {workload.description} ({workload.server})")
            entry = {"workload": workload.as_dict(), "unit": workload.unit,
                     "implementations": {}}
            servers = {}
            upstream = None
            if workload.proxy:
                upstream = pool.start("reference", workload, opts.host, opts.server_cpu, budget)
            for impl in impls_for(workload):
                try:
                    servers[impl] = pool.start(impl, workload, opts.host, opts.server_cpu, budget,
                                               upstream=upstream and upstream.port)
                except RuntimeError as exc:
                    log(f"{tag}: {exc}")
                    entry["implementations"][impl] = {"error": str(exc), "rounds": [],
                                                      "median": {"rounds": 0}}
                    continue
                results["engines"].setdefault(impl, servers[impl].engine)
                entry["implementations"][impl] = {"engine": servers[impl].engine, "rounds": []}
            for rnd in range(1, opts.rounds + 1):
                for impl, server in servers.items():
                    if not server.alive():
                        result = {"error": "server process exited"}
                    else:
                        result = run_one(server, workload, opts)
                    entry["implementations"][impl]["rounds"].append(result)
                    log(f"{tag} round {rnd}/{opts.rounds}: {describe_round(impl, result, workload)}")
                    time.sleep(SETTLE)
            for impl, server in servers.items():
                data = entry["implementations"][impl]
                data["median"] = summarize(data["rounds"])
                text = server.error_text()
                data["server_tracebacks"] = text.count("Traceback (most recent call last)")
                if text.strip():
                    data["server_stderr_tail"] = text[-1500:]
                pool.stop(server)
            if upstream is not None:
                pool.stop(upstream)
            entry["ratios"] = ratios_of(entry)
            results["workloads"].append(entry)
    finally:
        pool.stop_all()
    return results


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(prog="python -m cysocketserver bench")
    parser.description = (
        "Serve the same echo handlers with the stdlib's socketserver and with cysocketserver, "
        "each in its own process, drive both with a compiled load client in interleaved "
        "rounds, and print the rates side by side with their ratio, its spread over the "
        "rounds and the CPU time per request.")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test, not figures: 2 short rounds, the whole run in "
                        "under a minute, to see that everything runs")
    parser.add_argument("--workload", action="append", metavar="NAME",
                        help="run this workload (repeatable; 'all' runs every one); "
                        "--list shows them")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("--duration", type=float, help="measured seconds per round (2; quick 0.5)")
    parser.add_argument("--warmup", type=float,
                        help="seconds per round before measuring starts (0.5; quick 0.2)")
    parser.add_argument("--rounds", type=int, help="rounds per implementation (3; quick 2)")
    parser.add_argument("--max-requests", type=int, default=0,
                        help="end a round after this many requests as well (0: no limit)")
    parser.add_argument("--wide", action="store_true",
                        help="add the p50 and p99 latencies to the table (wider than 100 "
                        "columns)")
    parser.add_argument("--json", metavar="FILE", help="write every round, the medians, the "
                        "ratios with their spread and the machine's description to FILE")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw the ratios, their spread and p99s on a logarithmic axis "
                        "(needs matplotlib)")
    parser.add_argument("--peers", action="store_true",
                        help="add asyncio, uvloop and gevent echo servers where installed")
    parser.add_argument("--reference", action="store_true",
                        help="add a C echo server: the load client's own ceiling")
    parser.add_argument("--proxies", metavar="NAMES", default=",".join(relays.DEFAULT_PROXIES),
                        help="the relays beside stdlib and cy on the proxy rows, of "
                        f"{', '.join(relays.PROXIES)} (default: %(default)s; HAProxy where "
                        "installed)")
    parser.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "::1"),
                        help="loopback address to serve on")
    parser.add_argument("--client-cpu", metavar="CPUS",
                        help="pin the load client to these CPUs (e.g. 0)")
    parser.add_argument("--server-cpu", metavar="CPUS",
                        help="pin the servers to these CPUs (e.g. 1)")
    return parser


def finish_options(opts, parser):
    quick = opts.quick
    if opts.duration is None:
        opts.duration = 0.5 if quick else 2.0
    if opts.warmup is None:
        opts.warmup = 0.2 if quick else 0.5
    if opts.rounds is None:
        opts.rounds = 2 if quick else 3
    if opts.duration <= 0 or opts.duration > 600:
        parser.error("--duration must be in (0, 600]")
    if opts.warmup < 0 or opts.warmup > 60:
        parser.error("--warmup must be in [0, 60]")
    if opts.rounds < 1 or opts.rounds > 100:
        parser.error("--rounds must be between 1 and 100")
    if opts.max_requests < 0:
        parser.error("--max-requests must not be negative")
    names = opts.workload or list(DEFAULT)
    if names == ["all"]:
        names = [w.name for w in WORKLOADS]
    for name in names:
        try:
            by_name(name)
        except ValueError as exc:
            parser.error(str(exc))
    opts.workload = list(dict.fromkeys(names))
    if isinstance(opts.proxies, str):
        opts.proxies = [name for name in opts.proxies.split(",") if name]
    unknown = sorted(set(opts.proxies) - set(relays.PROXIES))
    if unknown:
        parser.error(f"--proxies: unknown {', '.join(unknown)}; "
                     f"known: {', '.join(relays.PROXIES)}")
    for flag in ("client_cpu", "server_cpu"):
        value = getattr(opts, flag)
        if value:
            try:
                cpus = parse_cpus(value)
            except ValueError:
                parser.error(f"--{flag.replace('_', '-')} takes CPU numbers such as 0 or 0,1")
            if not hasattr(os, "sched_setaffinity"):
                parser.error(f"--{flag.replace('_', '-')} needs os.sched_setaffinity (Linux)")
            allowed = os.sched_getaffinity(0)
            if not cpus <= allowed:
                parser.error(f"--{flag.replace('_', '-')}: CPUs {sorted(cpus - allowed)} are not "
                             f"available (this process may use {sorted(allowed)})")
            setattr(opts, flag, ",".join(str(c) for c in sorted(cpus)))
    if opts.plot:
        report.check_plotting()   # fail now, not after the run
    return opts


def run(opts):
    """Entry point for an already parsed command line."""
    if opts.list:
        for w in WORKLOADS:
            star = "*" if w.name in DEFAULT else " "
            print(f"{star} {w.name:<21} {w.server:<19} {w.description}")
        print("* run by default")
        return 0
    try:
        from .. import _loadgen  # noqa: F401
    except ImportError as exc:
        print(f"the load client (cysocketserver._loadgen) is not built: {exc}", file=sys.stderr)
        return 2
    machine = machine_info()
    if opts.client_cpu:
        os.sched_setaffinity(0, parse_cpus(opts.client_cpu))

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    try:
        results = run_benchmark(opts, machine)
    except KeyboardInterrupt:
        log("interrupted; every server process has been stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    print(report.format_table(results, wide=getattr(opts, "wide", False)))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=2)
        log(f"wrote {opts.json}")
    if opts.plot:
        report.plot(results, opts.plot)
        log(f"wrote {opts.plot}")
    return 0


def main(argv=None):
    parser = build_parser()
    opts = finish_options(parser.parse_args(argv), parser)
    return run(opts)
