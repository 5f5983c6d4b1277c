"""Typed reads of the environment, for the services' ``from_env`` constructors.

Configuration is read once, at the edge (``main()``), into frozen dataclasses that are
passed down; nothing reads ``os.environ`` while serving. A bad value raises
``ConfigError`` naming the variable, the value and what is accepted, and the service
exits 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from logjson import LEVELS


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
