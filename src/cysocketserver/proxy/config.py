"""The proxy's settings: the upstream syntax, the defaults, a TOML file, and the command line
over the file.

A setting comes from the command line if it was given there, else from the file, else from
its default.  ``resolve()`` turns those into one ``Settings``; a mistake is a ``ConfigError``
with a one-line message.  The file is read again on SIGHUP (``load_file()``), and the
command line still wins over it.
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["ConfigError", "UpstreamSpec", "Settings", "DEFAULTS", "parse_address",
           "parse_upstream", "parse_route", "load_file", "resolve"]


class ConfigError(ValueError):
    """A setting that does not parse, or a file that does not load: one line."""


@dataclass(frozen=True)
class UpstreamSpec:
    """One ``--upstream HOST:PORT[,weight=N][,max-connections=N][,backup]``."""

    host: str
    port: int
    weight: int = 1
    max_connections: Optional[int] = None
    backup: bool = False

    @property
    def name(self):
        """HOST:PORT as an operator writes it ([IPv6]:PORT): the label on its metrics."""
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    @property
    def address(self):
        return (self.host, self.port)


# An idle tunnel is closed after an hour: long enough for the protocols people put behind an
# L4 proxy (databases, message brokers, SSH) whose clients go quiet between bursts or send
# keepalives every few minutes, short enough that pairs a client abandoned without a FIN
# (a laptop closed, a NAT that forgot the flow) do not pile up for ever.
DEFAULT_IDLE_TIMEOUT = 3600.0

DEFAULTS = {
    "listen": None,
    "upstreams": (),
    "balance": "roundrobin",
    "connect_timeout": 5.0,
    "retries": 2,
    "health_check_interval": 2.0,
    "rise": 2,
    "fall": 3,
    "health_check_send": None,
    "health_check_expect": None,
    "idle_timeout": DEFAULT_IDLE_TIMEOUT,
    "accept_proxy": None,
    "send_proxy": None,
    "max_connections": None,
    "max_connections_per_client": None,
    "drain_timeout": 10.0,
    "metrics": None,
    "log_level": "info",
    "workers": None,
    # TLS: terminated here (tls_cert, tls_key), spoken to the upstreams (upstream_tls,
    # upstream_ca), or passed through, routed by the ClientHello's server name (sni).
    "tls_cert": None,
    "tls_key": None,
    "upstream_tls": False,
    "upstream_ca": None,
    "sni": (),
    "client_hello_timeout": 10.0,
}
BALANCES = ("roundrobin", "leastconn", "source")
ACCEPT_PROXY = ("v1", "v2", "any")
SEND_PROXY = ("v1", "v2")
# What SIGHUP changes for new connections; the rest is fixed while the process runs.
RELOADED = ("upstreams", "balance", "connect_timeout", "retries", "health_check_interval",
            "rise", "fall", "health_check_send", "health_check_expect", "idle_timeout",
            "send_proxy")


@dataclass(frozen=True)
class Settings:
    """Every setting, checked; see DEFAULTS."""

    listen: Tuple[str, int]
    upstreams: Tuple[UpstreamSpec, ...]
    balance: str
    connect_timeout: float
    retries: int
    health_check_interval: float
    rise: int
    fall: int
    health_check_send: Optional[bytes]
    health_check_expect: Optional[bytes]
    idle_timeout: Optional[float]
    accept_proxy: Optional[str]
    send_proxy: Optional[str]
    max_connections: Optional[int]
    max_connections_per_client: Optional[int]
    drain_timeout: float
    metrics: Optional[Tuple[str, int]]
    log_level: str
    workers: Optional[int]
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    upstream_tls: bool = False
    upstream_ca: Optional[str] = None
    sni: Tuple[Tuple[str, UpstreamSpec], ...] = ()
    client_hello_timeout: float = 10.0


# -- the values ---------------------------------------------------------------------------------

def parse_address(text, what="address"):
    """HOST:PORT or [IPv6]:PORT -> (host, port); an empty HOST is every IPv4 interface."""
    if not isinstance(text, str):
        raise ConfigError("%s: expected \"HOST:PORT\", not %r" % (what, text))
    where, sep, number = text.strip().rpartition(":")
    if not sep or not number.isdigit() or not 0 <= int(number) <= 65535:
        raise ConfigError("%s: expected HOST:PORT with a port from 0 to 65535, not %r"
                          % (what, text))
    if where.startswith("[") and where.endswith("]"):
        where = where[1:-1]
    elif ":" in where:
        raise ConfigError("%s: an IPv6 address goes in brackets, [::1]:PORT, not %r"
                          % (what, text))
    return where or "0.0.0.0", int(number)


def _whole(value, minimum, what):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError("%s: expected a whole number of at least %d, not %r"
                          % (what, minimum, value))
    return value


def _seconds(value, what, zero_ok=False):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or (
            number == 0 and not zero_ok):
        raise ConfigError("%s: expected a number of seconds %s 0, not %r"
                          % (what, ">=" if zero_ok else ">", value))
    return number


def _choice(value, choices, what):
    if value not in choices:
        raise ConfigError("%s: expected one of %s, not %r" % (what, ", ".join(choices), value))
    return value


def parse_upstream(text):
    """``HOST:PORT[,weight=N][,max-connections=N][,backup]`` -> UpstreamSpec."""
    if not isinstance(text, str):
        raise ConfigError("upstream: expected \"HOST:PORT[,weight=N][,max-connections=N]"
                          "[,backup]\", not %r" % (text,))
    where, *options = text.split(",")
    host, port = parse_address(where, "upstream")
    if port == 0:
        raise ConfigError("upstream %r: port 0 is not a port to connect to" % text)
    weight, limit, backup = 1, None, False
    for option in options:
        key, sep, value = option.strip().partition("=")
        if key == "backup" and not sep:
            backup = True
        elif key == "weight" and sep:
            weight = _whole(value, 1, "upstream %r: weight" % text)
        elif key == "max-connections" and sep:
            limit = _whole(value, 1, "upstream %r: max-connections" % text)
        else:
            raise ConfigError("upstream %r: unknown option %r (weight=N, max-connections=N, "
                              "backup)" % (text, option))
    return UpstreamSpec(host, port, weight, limit, backup)


def parse_route(text):
    """``NAME=HOST:PORT`` -> (name, UpstreamSpec): TLS naming NAME goes to HOST:PORT."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError("sni: expected \"NAME=HOST:PORT\", not %r" % (text,))
    name, _, where = text.partition("=")
    name = name.strip().lower().rstrip(".")
    if not name or not all(part and len(part) <= 63 for part in name.split(".")) \
            or not name.isascii() or any(c.isspace() for c in name):
        raise ConfigError("sni %r: %r is not a server name" % (text, name))
    host, port = parse_address(where, "sni %r" % text)
    if port == 0:
        raise ConfigError("sni %r: port 0 is not a port to connect to" % text)
    return name, UpstreamSpec(host, port)


def _routes(value, what):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError("%s: expected a list of \"NAME=HOST:PORT\" strings" % what)
    routes = tuple(item if isinstance(item, tuple) else parse_route(item) for item in value)
    names = [name for name, _spec in routes]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError("%s: %s is routed twice" % (what, ", ".join(twice)))
    return routes


def _path(value, what):
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("%s: expected a file name, not %r" % (what, value))
    return value


def _flag(value, what):
    if not isinstance(value, bool):
        raise ConfigError("%s: expected true or false, not %r" % (what, value))
    return value


def _text(value, what):
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("%s: expected a non-empty string, not %r" % (what, value))
    # Written on a command line or in TOML: \r\n and the like arrive as escapes or as bytes.
    return value.encode("utf-8").decode("unicode_escape").encode("latin-1")


def _optional(check):
    return lambda value, what: None if value is None else check(value, what)


_CHECKS = {
    "listen": lambda value, what: value if isinstance(value, tuple) else parse_address(value,
                                                                                        what),
    "balance": lambda value, what: _choice(value, BALANCES, what),
    "connect_timeout": lambda value, what: _seconds(value, what),
    "retries": lambda value, what: _whole(value, 0, what),
    "health_check_interval": lambda value, what: _seconds(value, what, zero_ok=True),
    "rise": lambda value, what: _whole(value, 1, what),
    "fall": lambda value, what: _whole(value, 1, what),
    "health_check_send": _text,
    "health_check_expect": _text,
    # 0 turns the idle timeout off.
    "idle_timeout": lambda value, what: _seconds(value, what, zero_ok=True) or None,
    "accept_proxy": _optional(lambda value, what: _choice(value, ACCEPT_PROXY, what)),
    "send_proxy": _optional(lambda value, what: _choice(value, SEND_PROXY, what)),
    "max_connections": _optional(lambda value, what: _whole(value, 1, what)),
    "max_connections_per_client": _optional(lambda value, what: _whole(value, 1, what)),
    "drain_timeout": lambda value, what: _seconds(value, what, zero_ok=True),
    "metrics": _optional(lambda value, what: value if isinstance(value, tuple)
                         else parse_address(value, what)),
    "log_level": lambda value, what: _choice(value, ("debug", "info", "warning", "error"),
                                             what),
    "workers": _optional(lambda value, what: _whole(value, 1, what)),
    "tls_cert": _path,
    "tls_key": _path,
    "upstream_tls": _flag,
    "upstream_ca": _path,
    "sni": _routes,
    "client_hello_timeout": lambda value, what: _seconds(value, what),
}


# -- the file and the command line --------------------------------------------------------------

def load_file(path):
    """The settings in the TOML file at ``path``, as {name: raw value}; ConfigError if it
    does not load or names a setting there is not."""
    import tomllib

    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("%s is not valid TOML: %s" % (path, exc)) from None
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in DEFAULTS:
            raise ConfigError("%s: unknown setting %r" % (path, key))
        values[name] = value
    if "upstreams" in values and not isinstance(values["upstreams"], list):
        raise ConfigError("%s: upstreams: expected a list of \"HOST:PORT[,...]\" strings"
                          % path)
    return values


def resolve(given, from_file=None, where="the command line"):
    """One Settings from ``given`` (the command line: {name: value}, None where not given)
    over ``from_file`` (load_file()'s) over DEFAULTS; ConfigError on a mistake."""
    from_file = from_file or {}
    chosen = {}
    for name, default in DEFAULTS.items():
        value = given.get(name)
        source = "--" + name.replace("_", "-")
        if value is None or value == [] or value == ():
            value = from_file.get(name, default)
            source = "%s: %s" % (where, name.replace("_", "-")) if name in from_file else source
        chosen[name] = value if name == "upstreams" else _CHECKS.get(
            name, lambda v, _w: v)(value, source)
    upstreams = tuple(spec if isinstance(spec, UpstreamSpec) else parse_upstream(spec)
                      for spec in chosen["upstreams"])
    if not upstreams:
        raise ConfigError("no upstream: give --upstream HOST:PORT (or upstreams = [...] in "
                          "--config)")
    names = [spec.name for spec in upstreams]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError("upstream %s is listed twice" % ", ".join(twice))
    if chosen["listen"] is None:
        raise ConfigError("no --listen HOST:PORT (or listen = \"HOST:PORT\" in --config)")
    chosen["upstreams"] = upstreams
    _check_tls(chosen)
    return Settings(**chosen)


def _check_tls(chosen):
    """The TLS settings that go together, and those that do not."""
    if chosen["tls_key"] is not None and chosen["tls_cert"] is None:
        raise ConfigError("tls-key: only with tls-cert")
    if chosen["upstream_ca"] is not None and not chosen["upstream_tls"]:
        raise ConfigError("upstream-ca: only with upstream-tls")
    if chosen["sni"] and (chosen["tls_cert"] is not None or chosen["upstream_tls"]):
        raise ConfigError("sni passes TLS through untouched: not with tls-cert or "
                          "upstream-tls")
