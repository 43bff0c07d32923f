"""``python -m cysocketserver.bench.prefork``: what prefork workers buy, and at what cost.

The echo server of the command line (``python -m cysocketserver echo``) is started with and
without ``--workers``, and driven by the compiled load client (``cysocketserver._loadgen``)
from this process, in interleaved rounds (config A round 1, config B round 1, ..., then
round 2 ...); the tables give medians.  Three parts:

``throughput``
    requests/s and the server's CPU time per request (the parent and every worker process:
    user + system) for the plain server and for 1 and 2 workers in both balancing modes, on a
    connect-per-request workload and on a keep-alive line echo; once unpinned and once with
    the load client on CPU 0 and every server process on CPU 1.
``spread``
    the share of the connections each worker accepted (from the per-worker Prometheus
    counters before and after a round), for 2 and 4 workers, under 16 concurrent connect
    loops and under one at a time.
``slow``
    latency when one worker is stopped (SIGSTOP): for ~300 ms in the middle of the measured
    part of the round, or for its first three quarters (so that what it held up still ends,
    and is timed, within the measured part); with a control round (no stop).

Every server runs in its own session and gets SIGTERM when this process ends (even killed);
everything is stopped at the end, on Ctrl-C and on errors.  Linux only (/proc, affinity).
"""
import argparse
import contextlib
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Optional

from .harness import (child_pids, child_setup, machine_info, package_environment,
                      process_cpu_seconds, read_back)
from .harness import summarize as harness_summarize
from .report import _render, fmt_us

__all__ = ["main"]

DRAIN = 1.0           # seconds at most for the requests under way when a round ends
SETTLE = 0.1          # seconds between two rounds
START_TIMEOUT = 20.0
# After a round the per-worker counts may still move (queued connections being accepted):
# wait this long at most for them to stop, looking this often.
COUNTS_SETTLE_TIMEOUT = 2.0
COUNTS_SETTLE_STEP = 0.05
PAUSE = 0.3           # how long the "pause" round keeps a worker stopped
LONG = 0.75           # the share of the measured part the "long" round keeps a worker stopped
SIZE = 64


def log(message):
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)

class Config:
    """One way of serving: the plain server (workers None) or prefork."""
    model: str
    workers: Optional[int] = None
    balancing: str = "shared"

    @property
    def label(self):
        if self.workers is None:
            return "plain (no --workers)"
        return f"{self.balancing} x{self.workers}"


@dataclass(frozen=True)
class Load:
    name: str
    mode: str
    connections: int

    @property
    def description(self):
        if self.mode == "connect":
            return f"connect per request, {self.connections} at a time, {SIZE} B"
        return f"keep-alive line echo, {self.connections} connections, {SIZE} B"


CONNECT = Load("connect-16", "connect", 16)
CONNECT_LIGHT = Load("connect-1", "connect", 1)
PINGPONG = Load("line-16x64", "pingpong", 16)


# -- one server -----------------------------------------------------------------------------------

_ANNOUNCED = re.compile(rb"\bon (\S+):(\d+); ")
_METRICS = re.compile(rb"metrics on http://(\S+)/metrics")
_WORKER_COUNT = re.compile(
    r'^cysocketserver_worker_requests_total\{[^}]*worker="(\d+)"[^}]*\}\s+(\S+)$', re.M)


class EchoServer:
    """``python -m cysocketserver echo`` in a process (and session) of its own."""

    def __init__(self, config, cpus=None):
        self.config = config
        cmd = [sys.executable, "-m", "cysocketserver", "echo", "--host", "127.0.0.1",
               "--port", "0", "--server", config.model, "--log-level", "warning"]
        if config.workers is not None:
            cmd += ["--workers", str(config.workers), "--balancing", config.balancing,
                    "--metrics", "127.0.0.1:0"]
        env = package_environment()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env, start_new_session=True,
                                     preexec_fn=child_setup(cpus))
        self.port = self.metrics_url = None
        try:
            self._read_announcement()
            self._wait_for_workers()
        except BaseException:
            self.stop()
            raise

    def _read_announcement(self):
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        text = b""
        want_metrics = self.config.workers is not None
        while self.port is None or (want_metrics and self.metrics_url is None):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"{self.config.label} did not start: "
                                   f"{self.error_text()[-1500:]}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    continue
                text += chunk
                found = _ANNOUNCED.search(text)
                if found:
                    self.port = int(found.group(2))
                found = _METRICS.search(text)
                if found:
                    self.metrics_url = f"http://{found.group(1).decode()}/metrics"

    def _wait_for_workers(self):
        """Until every worker process has been forked (the announcement comes before)."""
        if self.config.workers is None:
            return
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.worker_pids()) < self.config.workers:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{self.config.label}: the workers did not start")
            time.sleep(0.05)
        # And until each has accepted on its listener: a served connection per worker is not
        # something we can force, so give them a moment to reach their loops.
        time.sleep(0.3)

    def alive(self):
        return self.proc.poll() is None

    def worker_pids(self):
        return child_pids(self.proc.pid)

    def cpu_seconds(self):
        """User + system CPU time of the parent and all its worker processes so far."""
        return process_cpu_seconds(self.proc.pid)

    def worker_counts(self):
        """Connections accepted so far by each worker index ({} for the plain server)."""
        if self.metrics_url is None:
            return {}
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        return {int(i): int(float(v)) for i, v in _WORKER_COUNT.findall(text)}

    def settled_worker_counts(self):
        """worker_counts() once they stop changing: connections the client opened just before
        it stopped may still be in a listener's queue, accepted (and counted) a moment later."""
        counts = self.worker_counts()
        deadline = time.monotonic() + COUNTS_SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            time.sleep(COUNTS_SETTLE_STEP)
            again = self.worker_counts()
            if again == counts:
                break
            counts = again
        return counts

    def error_text(self):
        return read_back(self.stderr)

    def stop(self):
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGCONT)   # a worker we stopped must not stay so
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            proc.stdout.close()


class Servers:
    """Every server started, so that all of them are stopped whatever happens."""

    def __init__(self):
        self.running = []

    def start(self, config, cpus=None):
        server = EchoServer(config, cpus)
        self.running.append(server)
        return server

    def stop_all(self):
        while self.running:
            self.running.pop().stop()


# -- one round ------------------------------------------------------------------------------------

def _stop_worker_later(pid, start, length, done):
    """SIGSTOP ``pid`` ``start`` seconds from now and SIGCONT it ``length`` seconds later."""
    def stopper():
        if done.wait(start):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        try:
            done.wait(length)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=stopper, daemon=True)
    thread.start()
    return thread


def run_round(server, load, opts, stop=None):
    """One round: the load client's result, the server's CPU, and each worker's connections.

    stop: None, "pause" (one worker stopped for PAUSE s in the middle of the measured part)
    or "long" (stopped from the start of the measured part for three quarters of it: what it
    held up then ends within the measured part, so its latency is counted).
    """
    from .. import _loadgen

    before = server.worker_counts()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = server.cpu_seconds()
    done = threading.Event()
    stopper = stopped_pid = None
    if stop is not None:
        stopped_pid = server.worker_pids()[0]
        if stop == "pause":
            start, length = opts.warmup + opts.duration / 2 - PAUSE / 2, PAUSE
        else:
            start, length = opts.warmup, opts.duration * LONG
        stopper = _stop_worker_later(stopped_pid, start, length, done)
    wall0 = time.monotonic()
    try:
        result = _loadgen.run(load.mode, "127.0.0.1", server.port,
                              connections=load.connections, size=SIZE, duration=opts.duration,
                              warmup=opts.warmup, drain=DRAIN)
    finally:
        done.set()
        if stopper is not None:
            stopper.join()
    wall = time.monotonic() - wall0
    cpu1 = server.cpu_seconds()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    after = server.settled_worker_counts()
    result["client_cores"] = ((usage1.ru_utime + usage1.ru_stime)
                              - (usage0.ru_utime + usage0.ru_stime)) / wall
    if cpu0 is not None and cpu1 is not None:
        result["server_cores"] = (cpu1 - cpu0) / wall
    result["worker_connections"] = {i: after.get(i, 0) - before.get(i, 0)
                                    for i in sorted(set(before) | set(after))}
    if stop is not None:
        result["stopped"] = {"kind": stop, "pid": stopped_pid}
    return result


def summarize(rounds):
    """The main bench's medians, plus the largest latency, the requests a drain cut short and
    the connections each worker took."""
    summary = harness_summarize(rounds)
    lat = [r["latency_us"] for r in rounds if r["latency_us"].get("samples")]
    per_worker = {}
    for r in rounds:
        for index, count in r["worker_connections"].items():
            per_worker[index] = per_worker.get(index, 0) + count
    summary.update({
        "max_us": max((x.get("max") for x in lat if x.get("max") is not None), default=None),
        "unfinished_at_stop": sum(r.get("unfinished_at_stop", 0) for r in rounds),
        "worker_connections": per_worker,
    })
    return summary


def interleave(cases, opts, tag):
    """cases: [(key, server, load, stop)]; runs opts.rounds rounds of each, interleaved.
    Returns {key: [round results]}."""
    results = {key: [] for key, *_ in cases}
    for rnd in range(1, opts.rounds + 1):
        for key, server, load, stop in cases:
            if not server.alive():
                raise RuntimeError(f"{server.config.label} exited: {server.error_text()[-1500:]}")
            result = run_round(server, load, opts, stop)
            results[key].append(result)
            p99 = result["latency_us"].get("p99")
            cores = result.get("server_cores")
            log(f"{tag} round {rnd}/{opts.rounds} {key}: {result['rate']:,.0f} req/s, "
                f"p99 {fmt_us(p99)}, server {cores if cores is None else round(cores, 2)} cores"
                + (f", errors {result['error_total']}" if result["error_total"] else ""))
            time.sleep(SETTLE)
    return results


# -- the three parts ------------------------------------------------------------------------------

def _placements(opts):
    """(name, client CPUs, server CPUs) to run part 1 with."""
    usable = sorted(os.sched_getaffinity(0))
    placements = [("unpinned", None, None)]
    if opts.pinned and len(usable) >= 2:
        placements.append(("pinned", {usable[0]}, {usable[1]}))
    return placements, usable


def part_throughput(opts, servers, notes):
    placements, usable = _placements(opts)
    if opts.pinned and len(placements) == 1:
        notes.append("pinned placement skipped: fewer than 2 usable CPUs")
    out = []
    for model in opts.models:
        configs = [Config(model)] + [Config(model, n, b) for b in ("shared", "reuseport")
                                     for n in (1, 2)]
        for load in (CONNECT, PINGPONG):
            entry = {"model": model, "load": load.name, "description": load.description,
                     "placements": {}}
            for placement, client_cpus, server_cpus in placements:
                tag = f"[throughput {model} {load.name} {placement}]"
                started = [(c, servers.start(c, server_cpus)) for c in configs]
                if client_cpus:
                    os.sched_setaffinity(0, client_cpus)
                try:
                    rounds = interleave([(c.label, s, load, None) for c, s in started], opts, tag)
                finally:
                    if client_cpus:
                        os.sched_setaffinity(0, set(usable))
                    servers.stop_all()
                entry["placements"][placement] = {
                    "client_cpus": sorted(client_cpus) if client_cpus else None,
                    "server_cpus": sorted(server_cpus) if server_cpus else None,
                    "configs": {label: {"rounds": r, "median": summarize(r)}
                                for label, r in rounds.items()}}
            out.append(entry)
    return out


def part_spread(opts, servers):
    configs = [Config("threading", n, b) for b in ("shared", "reuseport") for n in (2, 4)]
    out = []
    for load in (CONNECT, CONNECT_LIGHT):
        tag = f"[spread {load.name}]"
        started = [(c, servers.start(c)) for c in configs]
        try:
            rounds = interleave([(c.label, s, load, None) for c, s in started], opts, tag)
        finally:
            servers.stop_all()
        for config, _server in started:
            r = rounds[config.label]
            out.append({"load": load.name, "description": load.description,
                        "balancing": config.balancing, "workers": config.workers,
                        "rounds": r, "median": summarize(r)})
    return out


def part_slow(opts, servers):
    configs = [Config("threading", n, b) for n in (2, 4) for b in ("shared", "reuseport")]
    started = [(c, servers.start(c)) for c in configs]
    cases = [((c.label, stop), s, CONNECT, stop) for c, s in started
             for stop in (None, "pause", "long")]
    try:
        rounds = interleave(cases, opts, "[slow]")
    finally:
        servers.stop_all()
    out = []
    for (label, stop), r in rounds.items():
        config = next(c for c in configs if c.label == label)
        out.append({"balancing": config.balancing, "workers": config.workers,
                    "stop": stop or "none", "rounds": r, "median": summarize(r)})
    return out


# -- tables ---------------------------------------------------------------------------------------

def _rate(m):
    return "-" if not m or m.get("rate") is None else f"{m['rate']:,.0f}"


def _range(m):
    if not m or not m.get("rate"):
        return "-"
    return f"±{(m['rate_max'] - m['rate_min']) / 2 / m['rate'] * 100:.0f}%"


def _cpu(m):
    return "-" if not m or m.get("server_cpu_us") is None else f"{m['server_cpu_us']:.0f} µs"


def _errors(m):
    errs = (m or {}).get("errors") or {}
    return ", ".join(f"{k} {v}" for k, v in errs.items()) or "0"


def _shares(counts):
    total = sum(counts.values())
    if not total:
        return "-", "-"
    shares = [counts[i] / total for i in sorted(counts)]
    text = " ".join(f"{s * 100:.0f}" for s in shares)
    ratio = f"{min(shares) / max(shares):.2f}" if max(shares) else "-"
    return text, ratio


def format_throughput(part, settings):
    lines = [f"1. Throughput and server CPU per request (parent + workers, user + system): "
             f"median of {settings['rounds']} rounds of {settings['duration']:g} s"]
    placements = []
    for entry in part:
        for name, data in entry["placements"].items():
            if name not in placements:
                placements.append(name)
                if data["client_cpus"]:
                    lines.append(f"   {name}: load client on CPU {data['client_cpus']}, every "
                                 f"server process on CPU {data['server_cpus']}")
                else:
                    lines.append(f"   {name}: client and server processes wherever the "
                                 "scheduler puts them")
    header = ["model", "workload", "server"]
    for name in placements:
        header += [f"{name} req/s", "±", "CPU/req", "p99"]
    rows = [header]
    for entry in part:
        labels = list(next(iter(entry["placements"].values()))["configs"])
        for label in labels:
            row = [entry["model"], entry["load"], label]
            for name in placements:
                m = entry["placements"].get(name, {}).get("configs", {}).get(label, {})
                m = m.get("median")
                row += [_rate(m), _range(m), _cpu(m), fmt_us((m or {}).get("p99_us"))]
            rows.append(row)
    lines += _render(rows, ["<", "<", "<"] + [">"] * (len(header) - 3))
    lines.append("± = half the range of the rounds' rates, relative to the median.  "
                 "connect-16: connect, one line, close, 16 loops at once; line-16x64: 16 "
                 "keep-alive connections, one 64 B line echoed at a time.")
    return lines


def format_spread(part, settings):
    lines = [f"2. Spread: connections accepted by each worker, summed over {settings['rounds']} "
             f"rounds (warm-up included), threading model"]
    rows = [["workload", "balancing", "workers", "connections", "share per worker %",
             "min/max", "req/s"]]
    for e in part:
        counts = e["median"]["worker_connections"]
        text, ratio = _shares(counts)
        rows.append([e["load"], e["balancing"], str(e["workers"]), f"{sum(counts.values()):,}",
                     text, ratio, _rate(e["median"])])
    lines += _render(rows, ["<", "<", ">", ">", "<", ">", ">"])
    lines.append("min/max = the smallest worker's share over the largest's (1.00: even).  "
                 "connect-1: one connection at a time (a light load).")
    return lines


def format_slow(part, settings):
    lines = [f"3. One worker stopped (SIGSTOP, then SIGCONT), threading model, connect-16: "
             f"median of {settings['rounds']} rounds of {settings['duration']:g} s",
             f"   stop none: control round; pause: stopped {PAUSE * 1000:.0f} ms in the middle "
             f"of the measured part; long: stopped from its start for {LONG * 100:.0f}% of it "
             f"({settings['duration'] * LONG:g} s)"]
    rows = [["workers", "balancing", "stop", "req/s", "p50", "p99", "p99.9", "max",
             "errors", "unfinished", "share per worker %"]]
    for e in part:
        m = e["median"]
        rows.append([str(e["workers"]), e["balancing"], e["stop"], _rate(m),
                     fmt_us(m.get("p50_us")), fmt_us(m.get("p99_us")),
                     fmt_us(m.get("p99.9_us")), fmt_us(m.get("max_us")), _errors(m),
                     str(m["unfinished_at_stop"]), _shares(m["worker_connections"])[0]])
    lines += _render(rows, ["<", "<", "<"] + [">"] * 7 + ["<"])
    lines.append("max = the largest over the rounds; errors and unfinished (requests still "
                 "under way when the drain ended) are summed over the rounds; the stopped "
                 "worker is the parent's child with the lowest pid, whose index the table "
                 "cannot tell; shares are over the whole round, warm-up included.")
    return lines


def format_report(results):
    settings = results["settings"]
    machine = results["machine"]
    out = [f"cysocketserver prefork benchmark: Python {machine['python']}, "
           f"{machine.get('usable_cores', machine['cores'])} cores shared by the load client "
           f"and the servers, {settings['engine']} engine, warm-up {settings['warmup']:g} s",
           f"load average at start {machine.get('load_average_at_start')}, at end "
           f"{results.get('load_average_at_end')}", ""]
    parts = results["parts"]
    if "throughput" in parts:
        out += format_throughput(parts["throughput"], settings) + [""]
    if "spread" in parts:
        out += format_spread(parts["spread"], settings) + [""]
    if "slow" in parts:
        out += format_slow(parts["slow"], settings) + [""]
    for note in results["notes"]:
        out.append(f"note: {note}")
    return "\n".join(out).rstrip()


# -- command line ---------------------------------------------------------------------------------

PARTS = ("throughput", "spread", "slow")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m cysocketserver.bench.prefork",
        description="Measure the prefork server (python -m cysocketserver echo --workers N) in "
                    "interleaved rounds: rate and server CPU per request for 1 and 2 workers in "
                    "both balancing modes against the plain server, unpinned and pinned; how "
                    "evenly the workers share the connections; latency with one worker stopped.")
    parser.add_argument("--quick", action="store_true",
                        help="short rounds, 1 of each, threading only: about a minute")
    parser.add_argument("--part", action="append", choices=PARTS,
                        help="run only this part (repeatable; default: all)")
    parser.add_argument("--model", action="append", choices=["threading", "greenlet", "pool",
                                                             "sync"],
                        help="serving model for part 1 (repeatable; default: threading and "
                             "greenlet where the greenlet package is installed)")
    parser.add_argument("--duration", type=float, help="measured seconds per round (2; quick 0.5)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (0.5; quick 0.2)")
    parser.add_argument("--rounds", type=int, help="rounds per configuration (3; quick 1)")
    parser.add_argument("--no-pinned", dest="pinned", action="store_false",
                        help="part 1: skip the pinned placement (client CPU 0, server CPU 1)")
    parser.add_argument("--json", metavar="FILE", help="write every round and the medians to FILE")
    return parser


def finish_options(opts, parser):
    if opts.duration is None:
        opts.duration = 0.5 if opts.quick else 2.0
    if opts.warmup is None:
        opts.warmup = 0.2 if opts.quick else 0.5
    if opts.rounds is None:
        opts.rounds = 1 if opts.quick else 3
    if not 0 < opts.duration <= 600 or not 0 <= opts.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if not 1 <= opts.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")
    if opts.duration <= PAUSE:
        parser.error(f"--duration must exceed the {PAUSE:g} s pause of part 3")
    opts.part = list(dict.fromkeys(opts.part or PARTS))
    if opts.model is None:
        import importlib.util

        opts.model = ["threading"]
        if not opts.quick and importlib.util.find_spec("greenlet") is not None:
            opts.model.append("greenlet")
    opts.models = list(dict.fromkeys(opts.model))
    if not sys.platform.startswith("linux"):
        parser.error("this benchmark reads /proc and pins CPUs: Linux only")
    return opts


def run(opts):
    try:
        from .. import _loadgen  # noqa: F401
        import cysocketserver
    except ImportError as exc:
        log(f"the load client (cysocketserver._loadgen) is not built: {exc}")
        return 2
    notes = []
    if "greenlet" in opts.models:
        import importlib.util

        if importlib.util.find_spec("greenlet") is None:
            opts.models.remove("greenlet")
            notes.append("greenlet: not installed, skipped")
    results = {
        "machine": machine_info(),
        "settings": {"duration": opts.duration, "warmup": opts.warmup, "rounds": opts.rounds,
                     "drain": DRAIN, "size": SIZE, "pause": PAUSE, "models": opts.models,
                     "engine": cysocketserver.IMPLEMENTATION,
                     "load_client": f"cysocketserver._loadgen ({_loadgen.BACKEND})"},
        "parts": {},
        "notes": notes,
    }

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    servers = Servers()
    started = time.monotonic()
    try:
        if "throughput" in opts.part:
            results["parts"]["throughput"] = part_throughput(opts, servers, notes)
        if "spread" in opts.part:
            results["parts"]["spread"] = part_spread(opts, servers)
        if "slow" in opts.part:
            results["parts"]["slow"] = part_slow(opts, servers)
    except KeyboardInterrupt:
        log("interrupted; every server process has been stopped")
        return 130
    finally:
        servers.stop_all()
        signal.signal(signal.SIGTERM, previous)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(format_report(results))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=2)
        log(f"wrote {opts.json}")
    return 0


def main(argv=None):
    parser = build_parser()
    return run(finish_options(parser.parse_args(argv), parser))


if __name__ == "__main__":
    sys.exit(main())
