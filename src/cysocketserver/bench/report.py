"""The benchmark's table and plot."""

__all__ = ["fmt_us", "format_table", "check_plotting", "plot"]

LABELS = {"cysocketserver": "cysocketserver", "reference": "C echo (ref)"}


def fmt_us(value):
    if value is None:
        return "-"
    if value < 1000:
        return f"{value:.0f} µs"
    if value < 100000:
        return f"{value / 1000:.2f} ms"
    return f"{value / 1e6:.2f} s" if value >= 1e6 else f"{value / 1000:.0f} ms"


def fmt_cpu(value):
    """Server CPU time per request, in microseconds."""
    return "-" if value is None else f"{value:.1f} µs"


def fmt_rate(median, unit):
    if not median or not median.get("rounds"):
        return "failed"
    if unit == "MB/s":
        return f"{median['mb_per_s']:,.1f}"
    return f"{median['rate']:,.0f}"


def rate_of(median, unit):
    if not median or not median.get("rounds"):
        return None
    return median["mb_per_s"] if unit == "MB/s" else median["rate"]


def ratio(entry, impl, base="stdlib"):
    impls = entry["implementations"]
    a = rate_of(impls.get(base, {}).get("median"), entry["unit"])
    b = rate_of(impls.get(impl, {}).get("median"), entry["unit"])
    if not a or b is None:
        return None
    return b / a


def _render(rows, aligns):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if a == "<" else cell.rjust(w)
                 for cell, w, a in zip(row, widths, aligns)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def format_table(results):
    settings = results["settings"]
    machine = results["machine"]
    impls = settings["implementations"]
    extra = [i for i in impls if i not in ("stdlib", "cysocketserver")]
    engine = results["engines"].get("cysocketserver", "?")
    out = [
        f"cysocketserver ({engine} engine) vs the stdlib's socketserver: median of "
        f"{settings['rounds']} round(s) of {settings['duration']:g} s each "
        f"(after {settings['warmup']:g} s warm-up)",
        f"Python {machine['python']}, {machine.get('usable_cores', machine['cores'])} cores "
        f"shared by client and servers, load client: {settings['load_client']}",
    ]
    if settings.get("client_cpu") or settings.get("server_cpu"):
        out.append(f"pinned: load client on CPU {settings.get('client_cpu') or 'any'}, "
                   f"servers on CPU {settings.get('server_cpu') or 'any'}")
    out += [
        "",
    ]
    header = ["workload", "server", "unit", "stdlib", "cysocketserver", "ratio",
              "p50 stdlib", "p50 cysocketserver", "p99 stdlib", "p99 cysocketserver",
              "CPU/req stdlib", "CPU/req cysocketserver"]
    header += [LABELS.get(i, i) for i in extra]
    with_reference = "reference" in extra
    if with_reference:
        header.append("cysocketserver / C ref")
    rows = [header]
    footnotes = []
    for entry in results["workloads"]:
        w = entry["workload"]
        unit = entry["unit"]
        impl_data = entry["implementations"]
        med = {i: impl_data.get(i, {}).get("median") for i in impls}
        r = ratio(entry, "cysocketserver")
        row = [w["name"], w["server"], unit,
               fmt_rate(med["stdlib"], unit), fmt_rate(med["cysocketserver"], unit),
               f"{r:.2f}x" if r is not None else "-",
               fmt_us((med["stdlib"] or {}).get("p50_us")),
               fmt_us((med["cysocketserver"] or {}).get("p50_us")),
               fmt_us((med["stdlib"] or {}).get("p99_us")),
               fmt_us((med["cysocketserver"] or {}).get("p99_us")),
               fmt_cpu((med["stdlib"] or {}).get("server_cpu_us")),
               fmt_cpu((med["cysocketserver"] or {}).get("server_cpu_us"))]
        for impl in extra:
            # Not every server runs every workload (the peers and the C server only echo).
            row.append(fmt_rate(med[impl], unit) if impl in impl_data else "-")
        if with_reference:
            to_limit = ratio(entry, "cysocketserver", base="reference")
            row.append(f"{to_limit:.2f}x" if to_limit is not None else "-")
        rows.append(row)
        for impl in impls:
            data = impl_data.get(impl, {})
            m = data.get("median") or {}
            if data.get("error"):
                footnotes.append(f"{w['name']} / {impl}: {data['error'].splitlines()[0]}")
            if m.get("errors"):
                errs = ", ".join(f"{k} {v}" for k, v in m["errors"].items())
                footnotes.append(f"{w['name']} / {impl}: client saw {errs} (all rounds)")
            if data.get("server_tracebacks"):
                footnotes.append(f"{w['name']} / {impl}: the server printed "
                                 f"{data['server_tracebacks']} traceback(s)")
    out += _render(rows, ["<", "<", "<"] + [">"] * (len(header) - 3))
    out.append("")
    out.append("ratio = cysocketserver rate / stdlib rate (higher is better); p50/p99 = median "
               "and 99th percentile latency of one request (stream: of one line);")
    out.append("CPU/req = the server process's CPU time (user + system) per request: what a "
               "request costs, whatever share of the cores the server got.")
    if with_reference:
        out.append("C echo (ref) = a single-threaded C epoll echo server: the limit of this load "
                   "client on this machine; cysocketserver / C ref = how close to it we come.")
    if engine not in ("compiled", "?"):
        out.append(f"NOTE: cysocketserver ran its {engine} engine (the compiled modules did "
                   "not load), so this is not the compiled package's speed.")
    load = machine.get("load_average_at_start")
    if load and load[0] > 0.5 * (machine.get("usable_cores") or machine["cores"] or 1):
        out.append(f"note: the machine was busy when the run started (load average "
                   f"{load[0]:.2f}): other work shares the cores, expect noise.")
    for note in results.get("notes", []):
        out.append(f"note: {note}")
    for note in footnotes:
        out.append(f"! {note}")
    return "\n".join(out)


def check_plotting():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None


def plot(results, path):
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = [i for i in results["settings"]["implementations"] if i != "stdlib"]
    workloads = results["workloads"]
    names = [e["workload"]["name"] for e in workloads]
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(names) * max(1, len(impls) * 0.6)), 5.5))
    top = 1.0
    for k, impl in enumerate(impls):
        xs, ys, notes = [], [], []
        for n, entry in enumerate(workloads):
            r = ratio(entry, impl)
            if r is None:
                continue
            mine = entry["implementations"][impl]["median"]
            xs.append(n - 0.4 + width * (k + 0.5))
            ys.append(r)
            notes.append(f"p99\n{fmt_us(mine.get('p99_us'))}")
        bars = ax.bar(xs, ys, width * 0.92, label=LABELS.get(impl, impl))
        for bar, y, note in zip(bars, ys, notes):
            top = max(top, y)
            ax.annotate(f"{y:.2f}x\n{note}", (bar.get_x() + bar.get_width() / 2, y),
                        ha="center", va="bottom", fontsize=6.5, xytext=(0, 2),
                        textcoords="offset points")
    ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    labels = []
    for entry in workloads:
        base = entry["implementations"].get("stdlib", {}).get("median") or {}
        labels.append(f"{entry['workload']['name']}\nstdlib p99 {fmt_us(base.get('p99_us'))}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylim(0, top * 1.35)
    ax.set_ylabel("rate relative to the stdlib's socketserver (1.0 = same)")
    machine = results["machine"]
    settings = results["settings"]
    ax.set_title(f"cysocketserver vs socketserver — median of {settings['rounds']} rounds, "
                 f"Python {machine['python']}, {machine.get('usable_cores', machine['cores'])} cores")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
