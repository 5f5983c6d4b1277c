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
from collections.abc import Mapping
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

    def text(self, name: str, default: str) -> str:
        return self.environ.get(name) or default

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self.environ.get(name)
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
        raw = self.environ.get(name)
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
        value = (self.environ.get("LOG_LEVEL") or "INFO").upper()
        if value not in LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, got {value!r}")
        return value

    def secret(self, name: str) -> str | None:
        """A bearer token, or None when unset. The error never repeats the value: it is a secret."""
        raw = self.environ.get(name)
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
