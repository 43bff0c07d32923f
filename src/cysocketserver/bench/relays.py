"""The proxy rows' other relays: HAProxy and this package's proxy command, each started as a
command of its own in front of the row's C echo server (harness.py starts them).

- ``haproxy``: HAProxy in ``mode tcp`` with its default threads (one per core), where it is
  installed; ``haproxy-nbthread1``: the same with one thread, like for like with one Python
  process.
- ``proxy-command``: ``python -m cysocketserver proxy`` as a user runs it (its defaults: health
  checks, idle timeout); ``proxy-command-workers2``: the same with ``--workers 2``.
"""
import os
import shutil
import sys

__all__ = ["PROXIES", "DEFAULT_PROXIES", "LABELS", "haproxy_path", "available", "command"]

PROXIES = ("haproxy", "haproxy-nbthread1", "proxy-command", "proxy-command-workers2")
DEFAULT_PROXIES = ("haproxy", "proxy-command")
LABELS = {"haproxy": "haproxy", "haproxy-nbthread1": "haproxy 1t",
          "proxy-command": "proxy cmd", "proxy-command-workers2": "cmd 2w"}
HAPROXY = "/usr/sbin/haproxy"      # not on the PATH of most users


def haproxy_path():
    """Where HAProxy is installed; None if it is not."""
    found = shutil.which("haproxy")
    if found is None and os.access(HAPROXY, os.X_OK):
        found = HAPROXY
    return found


def available(names):
    """(the relays of names that can run here, a note for each that cannot)."""
    found, notes = [], []
    haproxy = haproxy_path()
    for name in names:
        if name.startswith("haproxy") and haproxy is None:
            notes.append(f"{name}: HAProxy is not installed, skipped")
        else:
            found.append(name)
    return found, notes


def _haproxy_config(host, port, upstream_port, threads):
    lines = ["global", "    maxconn 4096"]
    if threads:
        lines.append(f"    nbthread {threads}")
    lines += ["defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 60s",
              "    timeout server 60s",
              "listen relay", f"    bind {host}:{port}", f"    server echo {host}:{upstream_port}"]
    return "\n".join(lines) + "\n"


def command(name, host, port, upstream_port, folder):
    """The command line of relay ``name`` on host:port in front of host:upstream_port; its
    files (HAProxy's config) go in folder."""
    if name.startswith("haproxy"):
        config = os.path.join(folder, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(_haproxy_config(host, port, upstream_port,
                                    1 if name == "haproxy-nbthread1" else None))
        return [haproxy_path(), "-f", config, "-db"]
    cmd = [sys.executable, "-m", "cysocketserver", "proxy", "--listen", f"{host}:{port}",
           "--upstream", f"{host}:{upstream_port}", "--log-level", "warning"]
    if name == "proxy-command-workers2":
        cmd += ["--workers", "2"]
    return cmd
