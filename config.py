"""Typed reads of the environment, for the services' ``from_env`` constructors.

Configuration is read once, at the edge (``main()``), into frozen dataclasses that are
passed down; nothing reads ``os.environ`` while serving. A bad value raises
``ConfigError`` naming the variable, the value and what is accepted, and the service
exits 2.
"""

from __future__ import annotations

import ipaddress
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from logjson import LEVELS

# RFC 6750 b64token: what fits in ``Authorization: Bearer <token>`` as is.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_CHARS = 16


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Env:
    """Typed reads of environment variables with defaults, naming the variable on error."""

    environ: Mapping[str, str]

    def _read(self, name: str, default: object) -> str | None:
        """The raw value of ``name``; a ``ReadLog`` environment also notes the read and its default."""
        if isinstance(self.environ, ReadLog):
            self.environ.note(name, default)
        return self.environ.get(name)

    def text(self, name: str, default: str) -> str:
        return self._read(name, default) or default

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self._read(name, default)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise ConfigError(f"{name} must be {bound}, got {value}")
        return value

    def port(self, default: int) -> int:
        return self.integer("PORT", default, minimum=0, maximum=65535)

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self._read(name, default)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {raw}")
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {raw}")
        return value

    def level(self) -> str:
        value = (self._read("LOG_LEVEL", "INFO") or "INFO").upper()
        if value not in LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, got {value!r}")
        return value

    def secret(self, name: str) -> str | None:
        """A bearer token, or None when unset. The error never repeats the value: it is a secret."""
        raw = self._read(name, None)
        if not raw:
            return None
        if len(raw) < MIN_TOKEN_CHARS or not _TOKEN_RE.fullmatch(raw):
            raise ConfigError(f"{name} must be at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - . _ ~ + / "
                              f"(a bearer token, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'); "
                              f"got a value of {len(raw)} characters")
        return raw


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- what a service reads, for --help and the README test ------------------------------------


class ReadLog(Mapping[str, str]):
    """An environment that notes every variable read through ``Env`` and its default, in order."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ
        self.reads: dict[str, object] = {}

    def note(self, name: str, default: object) -> None:
        self.reads.setdefault(name, default)

    def __getitem__(self, name: str) -> str:
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def _shown(default: object) -> str:
    if default is None or default == "":
        return "unset"
    return f"{default:g}" if isinstance(default, float) else str(default)


def variables(from_env: Callable[[Mapping[str, str]], object],
              when: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``[(name, default as shown)]`` of every variable ``from_env`` reads, found by running it
    on an empty environment. ``when`` (one variable and a value) runs it once more with that
    set: a default that differs is shown as ``"<default>; <other> when <NAME> is set"``."""
    plain = ReadLog({})
    from_env(plain)
    shown = {name: _shown(default) for name, default in plain.reads.items()}
    if when:
        other = ReadLog(when)
        from_env(other)
        (condition,) = when
        for name, default in other.reads.items():
            if name in shown and _shown(default) != shown[name]:
                shown[name] += f"; {_shown(default)} when {condition} is set"
    return list(shown.items())


def service_usage(prog: str, summary: str, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """A service's ``--help``: what it is, then every environment variable it reads with its default."""
    lines = [f"usage: python {prog} [-h | --help]", "", summary, ""]
    for title, rows in sections:
        lines.append(title)
        lines += [f"  {name:<32} {default}" for name, default in rows]
        lines.append("")
    lines.append("Exit status: 0 stopped cleanly (SIGTERM/SIGINT); 2 invalid configuration, port in use or bad usage.")
    return "\n".join(lines) + "\n"


def handle_arguments(argv: Sequence[str], prog: str, usage_text: Callable[[], str]) -> int | None:
    """A service takes no arguments but ``-h``/``--help``: the exit code when ``argv`` asks
    for help (0, usage on stdout) or is anything else (2, usage on stderr); None to run."""
    if not argv:
        return None
    if list(argv) in (["-h"], ["--help"]):
        sys.stdout.write(usage_text())
        return 0
    sys.stderr.write(f"{prog}: unknown argument(s): {' '.join(argv)}; configuration comes from the environment\n"
                     + usage_text())
    return 2
