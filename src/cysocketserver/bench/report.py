"""The benchmark's table and plot.

The table fits in WIDTH columns: the rates, the ratio with the spread of its rounds, and the
server's CPU time per request.  ``wide=True`` adds the p50 and p99 latencies; the --json file
keeps everything.  The plot draws the ratios on a logarithmic axis, so that 0.9x and 26x are
both readable, with the lowest and highest round as whiskers.
"""
import textwrap

from .relays import LABELS as PROXY_LABELS
from .ratios import NOISY_SPREAD, ratio_spread

__all__ = ["WIDTH", "fmt_us", "format_table", "check_plotting", "make_figure", "plot"]

WIDTH = 100
LABELS = {"cysocketserver": "cy", "reference": "C ref", **PROXY_LABELS}
PLOT_LABELS = {"reference": "C echo server (the load client's limit)"}
NOISY = "noisy"


def fmt_us(value):
    if value is None:
        return "-"
    if value < 1000:
        return f"{value:.0f} µs"
    if value < 100000:
        return f"{value / 1000:.2f} ms"
    return f"{value / 1e6:.2f} s" if value >= 1e6 else f"{value / 1000:.0f} ms"


def fmt_cpu(value):
    """Server CPU time per request, in microseconds (the unit is in the column's title)."""
    return "-" if value is None else f"{value:.1f}"


def fmt_rate(median, unit):
    if not median or not median.get("rounds"):
        return "failed"
    if unit == "MB/s":
        return f"{median['mb_per_s']:,.1f} MB/s"
    return f"{median['rate']:,.0f}"


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def fmt_range(spread):
    return "-" if spread is None or spread.rounds < 2 else f"{spread.low:.2f}-{spread.high:.2f}"


def _widths(rows):
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]


def _render(rows, aligns, widths=None):
    """rows[0] is the header: the lines of a plain text table."""
    widths = widths or _widths(rows)
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if a == "<" else cell.rjust(w)
                 for cell, w, a in zip(row, widths, aligns)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _render_grouped(groups, rows, aligns):
    """A table whose columns are gathered under titles: groups is [(title, column count)],
    the titles written centred over their columns, above rows[0]."""
    widths = _widths(rows)
    first = 0
    for title, count in groups:
        span = sum(widths[first:first + count]) + 2 * (count - 1)
        if len(title) > span:
            widths[first + count - 1] += len(title) - span
        first += count
    cells, first = [], 0
    for title, count in groups:
        span = sum(widths[first:first + count]) + 2 * (count - 1)
        cells.append(title.center(span) if title else " " * span)
        first += count
    return ["  ".join(cells).rstrip()] + _render(rows, aligns, widths)


def _wrap(text):
    return textwrap.wrap(text, WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def _title(results):
    settings = results["settings"]
    machine = results["machine"]
    engine = results["engines"].get("cysocketserver", "?")
    texts = [
        f"cysocketserver ({engine} engine) vs the stdlib's socketserver: "
        f"{settings['rounds']} round(s) of {settings['duration']:g} s "
        f"(+ {settings['warmup']:g} s warm-up)",
        f"Python {machine['python']}, {machine.get('usable_cores', machine['cores'])} cores "
        f"shared by client and servers; load client: {settings['load_client']}",
    ]
    if settings.get("client_cpu") or settings.get("server_cpu"):
        texts.append(f"pinned: load client on CPU {settings.get('client_cpu') or 'any'}, "
                     f"servers on CPU {settings.get('server_cpu') or 'any'}")
    if settings.get("quick"):
        texts.append("QUICK RUN: a smoke test that everything runs. Its rounds are too short "
                     "and too few for figures: do not quote them.")
    return [line for text in texts for line in _wrap(text)]


def main_table(results, wide=False):
    """Rates, ratio with its rounds' range and noise, CPU per request (and latency if wide):
    one row for each workload, and the rows' noise as a list of booleans."""
    impls = results["settings"]["implementations"]
    with_reference = "reference" in impls
    groups = [("", 1), ("req/s", 2), ("cy / stdlib", 3), ("CPU µs/req", 2)]
    header = ["workload", "stdlib", "cy", "ratio", "min-max", "", "stdlib", "cy"]
    if wide:
        groups += [("p50 latency", 2), ("p99 latency", 2)]
        header += ["stdlib", "cy", "stdlib", "cy"]
    if with_reference:
        groups.append(("", 1))
        header.append("cy/C ref")
    rows = [header]
    noisy = []
    for entry in results["workloads"]:
        unit = entry["unit"]
        impl_data = entry["implementations"]
        base = impl_data.get("stdlib", {}).get("median") or {}
        mine = impl_data.get("cysocketserver", {}).get("median") or {}
        spread = ratio_spread(entry, "cysocketserver")
        noisy.append(spread is not None and spread.noisy)
        row = [entry["workload"]["name"], fmt_rate(base, unit), fmt_rate(mine, unit),
               fmt_ratio(spread and spread.median), fmt_range(spread),
               NOISY if noisy[-1] else "",
               fmt_cpu(base.get("server_cpu_us")), fmt_cpu(mine.get("server_cpu_us"))]
        if wide:
            row += [fmt_us(base.get("p50_us")), fmt_us(mine.get("p50_us")),
                    fmt_us(base.get("p99_us")), fmt_us(mine.get("p99_us"))]
        if with_reference:
            to_limit = ratio_spread(entry, "cysocketserver", base="reference")
            row.append(fmt_ratio(to_limit and to_limit.median))
        rows.append(row)
    aligns = ["<"] + [">"] * 4 + ["<"] + [">"] * (len(header) - 6)
    return _render_grouped(groups, rows, aligns), noisy


def _is_proxy_row(entry):
    return entry["workload"].get("handler") == "relay"


def peers_table(results):
    """The peers' and the C echo server's rates beside ours, where any ran."""
    impls = results["settings"]["implementations"]
    echo_rows = [e for e in results["workloads"] if not _is_proxy_row(e)]
    extra = [i for i in impls if i not in ("stdlib", "cysocketserver")
             and any(i in e["implementations"] for e in echo_rows)]
    rows = [["workload", "stdlib", "cy"] + [LABELS.get(i, i) for i in extra]]
    any_noisy = False
    for entry in echo_rows:
        impl_data = entry["implementations"]
        if not any(i in impl_data for i in extra):
            continue
        row = [entry["workload"]["name"]]
        for impl in ["stdlib", "cysocketserver"] + extra:
            if impl not in impl_data:
                # Not every server runs every workload (the peers and the C server only echo).
                row.append("-")
                continue
            cell = fmt_rate(impl_data[impl].get("median"), entry["unit"])
            spread = ratio_spread(entry, impl) if impl != "stdlib" else None
            if spread is not None and spread.noisy:
                cell += " ~"
                any_noisy = True
            row.append(cell)
        rows.append(row)
    if len(rows) == 1:
        return []
    lines = ["", "Other servers on the echo rows, req/s:"]
    lines += _render(rows, ["<"] + [">"] * (len(rows[0]) - 1))
    if any_noisy:
        lines += _wrap("~ = noisy: that server's per-round ratio to the stdlib is noisy, "
                       "as above.")
    return lines


def _proxy_grid(entries, impls, cell):
    """A table of the proxy rows with a column per relay: cell(entry, impl) -> text."""
    rows = [["workload"] + [LABELS.get(i, i) for i in impls]]
    for entry in entries:
        rows.append([entry["workload"]["name"]]
                    + [cell(entry, impl) if impl in entry["implementations"] else "-"
                       for impl in impls])
    return _render(rows, ["<"] + [">"] * len(impls))


def proxies_table(results):
    """The proxy rows' relays side by side: rates, CPU per request, and the ratio of each to
    HAProxy's rate in the same round (where HAProxy ran)."""
    entries = [e for e in results["workloads"] if _is_proxy_row(e)]
    if not entries:
        return []
    impls = [i for i in results["settings"]["implementations"]
             if any(i in e["implementations"] for e in entries)]

    def rate(entry, impl):
        median = entry["implementations"][impl].get("median") or {}
        if not median.get("rounds"):
            return "failed"
        return f"{median['mb_per_s' if entry['unit'] == 'MB/s' else 'rate']:,.0f}"

    def cpu(entry, impl):
        return fmt_cpu((entry["implementations"][impl].get("median") or {}).get("server_cpu_us"))

    def to_haproxy(entry, impl):
        spread = ratio_spread(entry, impl, base="haproxy")
        if spread is None:
            return "-"
        return fmt_ratio(spread.median) + (" ~" if spread.noisy else "  ")

    lines = [""]
    lines += _wrap("Relays in front of the C echo server: req/s (MB/s on stream rows), median of "
                   "the rounds:")
    lines += _proxy_grid(entries, impls, rate)
    lines += [""] + _wrap("Their CPU µs per request (per 64 KiB write on stream rows): the "
                          "relay's processes only, not the echo server's:")
    lines += _proxy_grid(entries, impls, cpu)
    if "haproxy" in impls:
        others = [i for i in impls if i != "haproxy"]
        lines += [""] + _wrap("Rate / HAProxy's in the same round, median of the rounds "
                              "(~ = noisy, as above):")
        lines += _proxy_grid(entries, others, to_haproxy)
    return lines


def _footnotes(results):
    notes = []
    for entry in results["workloads"]:
        name = entry["workload"]["name"]
        for impl, data in entry["implementations"].items():
            m = data.get("median") or {}
            if data.get("error"):
                notes.append(f"{name} / {impl}: {data['error'].splitlines()[0]}")
            if m.get("errors"):
                errs = ", ".join(f"{k} {v}" for k, v in m["errors"].items())
                notes.append(f"{name} / {impl}: client saw {errs} (all rounds)")
            if data.get("server_tracebacks"):
                notes.append(f"{name} / {impl}: the server printed "
                             f"{data['server_tracebacks']} traceback(s)")
    return notes


def format_table(results, wide=False):
    """The report printed at the end of a run; every line fits in WIDTH columns unless
    wide is true."""
    settings = results["settings"]
    machine = results["machine"]
    impls = settings["implementations"]
    engine = results["engines"].get("cysocketserver", "?")
    out = _title(results) + [""]
    table, noisy = main_table(results, wide)
    out += table
    out.append("")
    legend = [
        "cy = cysocketserver. ratio = the median over the rounds of cy's rate over the stdlib's "
        "in the same round (higher is better); min-max = the lowest and highest of those "
        "per-round ratios.",
    ]
    if any(noisy):
        legend.append(f"{NOISY} = the rounds disagree by more than {NOISY_SPREAD:.0%} of the "
                      "median, or only one ran: not a result. Rerun with more --rounds on an "
                      "idle machine.")
    legend.append("CPU µs/req = the server process's CPU time (user + system) per request: "
                  "what a request costs, whatever share of the cores the server got.")
    if "reference" in impls:
        legend.append("cy/C ref = cy's rate over a single-threaded C epoll echo server's: "
                      "how close cy comes to the limit of this load client on this machine.")
    legend.append("Servers: Threading*Server, UDPServer or http.server's ThreadingHTTPServer; "
                  "greenlet- rows run GreenletTCPServer and pool- rows ThreadPoolTCPServer "
                  "against the stdlib's threads. --list describes each workload"
                  + ("." if wide else "; --wide adds latencies, --json keeps every round."))
    for text in legend:
        out += _wrap(text)
    if any(_is_proxy_row(e) for e in results["workloads"]):
        out += _wrap("proxy- rows: relays in their own processes in front of the same C echo "
                     "server; cy = GreenletTCPServer whose handler calls connect() and relay(), "
                     "stdlib = ThreadingTCPServer, a thread per connection copying with select(); "
                     "haproxy = HAProxy mode tcp (default: a thread per core; 1t: nbthread 1); "
                     "proxy cmd = python -m cysocketserver proxy (2w: --workers 2).")
    out += peers_table(results)
    out += proxies_table(results)
    notes = []
    if engine not in ("compiled", "?"):
        notes.append(f"NOTE: cysocketserver ran its {engine} engine (the compiled modules did "
                     "not load), so this is not the compiled package's speed.")
    load = machine.get("load_average_at_start")
    if load and load[0] > 0.5 * (machine.get("usable_cores") or machine["cores"] or 1):
        notes.append(f"note: the machine was busy when the run started (load average "
                     f"{load[0]:.2f}): other work shares the cores, expect noise.")
    notes += [f"note: {note}" for note in results.get("notes", [])]
    notes += [f"! {note}" for note in _footnotes(results)]
    if results.get("elapsed_seconds") is not None:
        notes.append(f"The run took {results['elapsed_seconds']:.0f} s.")
    if notes:
        out.append("")
    for text in notes:
        out += _wrap(text)
    return "\n".join(out)


def check_plotting():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None


def _ratio_ticks(low, high):
    """Round ratios (0.5x, 1x, 2x, 5x, ...) between low and high, 1x always among them."""
    ticks = []
    decade = 0.01
    while decade <= 1000:
        ticks += [decade * m for m in (1, 2, 5) if low <= decade * m <= high]
        decade *= 10
    return sorted(set(ticks) | {1.0})


def make_figure(results):
    """The ratios of every server to the stdlib as a matplotlib Figure: bars from 1x on a
    logarithmic axis, whiskers from the lowest to the highest round, noisy bars hatched."""
    check_plotting()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    impls = [i for i in results["settings"]["implementations"] if i != "stdlib"]
    workloads = results["workloads"]
    width = 0.8 / max(len(impls), 1)
    fig = Figure(figsize=(max(8, 1.3 * len(workloads) * max(1, len(impls) * 0.6)), 5.5))
    ax = fig.add_subplot()
    ax.set_yscale("log")
    low, high = 1.0, 1.0
    for k, impl in enumerate(impls):
        xs, spreads, notes = [], [], []
        for n, entry in enumerate(workloads):
            spread = ratio_spread(entry, impl)
            if spread is None or spread.median <= 0:
                continue
            mine = entry["implementations"][impl].get("median") or {}
            xs.append(n - 0.4 + width * (k + 0.5))
            spreads.append(spread)
            notes.append(f"{spread.median:.2f}×" + (" ~" if spread.noisy else "")
                         + f"\np99 {fmt_us(mine.get('p99_us'))}")
        if not xs:
            continue
        ys = [s.median for s in spreads]
        bars = ax.bar(xs, [y - 1.0 for y in ys], width * 0.92, bottom=1.0,
                      label=PLOT_LABELS.get(impl, impl))
        for bar, spread in zip(bars, spreads):
            if spread.noisy:
                bar.set_hatch("///")
                bar.set_alpha(0.6)
        ax.errorbar(xs, ys, yerr=[[y - s.low for y, s in zip(ys, spreads)],
                                  [s.high - y for y, s in zip(ys, spreads)]],
                    fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        for x, spread, note in zip(xs, spreads, notes):
            up = spread.median >= 1.0
            low, high = min(low, spread.low), max(high, spread.high)
            ax.annotate(note, (x, spread.high if up else spread.low), ha="center",
                        va="bottom" if up else "top", fontsize=6.5,
                        xytext=(0, 2 if up else -2), textcoords="offset points")
    # Room above and below for the notes, which take about a fifth of the axis' height.
    bottom, top = min(0.8, low / 1.6), max(1.25, high * 2.0)
    ax.set_ylim(bottom, top)
    ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    ax.yaxis.set_major_locator(FixedLocator(_ratio_ticks(bottom, top)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}×"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    labels = []
    for entry in workloads:
        base = entry["implementations"].get("stdlib", {}).get("median") or {}
        labels.append(f"{entry['workload']['name']}\nstdlib p99 {fmt_us(base.get('p99_us'))}")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("rate / the stdlib's rate in the same round (1× = the same)")
    machine = results["machine"]
    settings = results["settings"]
    ax.set_title(f"cysocketserver vs socketserver: median of {settings['rounds']} rounds, "
                 f"Python {machine['python']}, "
                 f"{machine.get('usable_cores', machine['cores'])} cores\n"
                 "whiskers: the lowest and highest round; hatched (~): noisy, not a result",
                 fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot(results, path):
    make_figure(results).savefig(path, dpi=120)
