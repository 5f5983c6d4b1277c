"""Scene inputs and the deterministic scene the worker "generates".

``parse_input`` validates a job's inputs (used by the orchestrator's API and by the
worker, so both accept exactly the same things). ``build_scene`` turns prompt, seed and
style into a small procedural level (rooms along a corridor, doors, entities, lights)
with a seeded RNG: equal inputs give byte-identical JSON, a different seed a different
scene. ``WORK_PHASES`` names the steps the worker reports progress for.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from typing import Any

PROMPT_MAX_CHARS = 1000
STYLE_MAX_CHARS = 64
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
INPUT_FIELDS = ("prompt", "seed", "style")

WORK_PHASES = (
    "interpret prompt", "seed generator", "lay out rooms", "connect doors",
    "place entities", "light scene", "dress materials", "bake digest",
)

_PALETTES = {
    "doom": ["#3b0a0a", "#7a1f1f", "#c2410c", "#1c1917"],
    "noir": ["#0a0a0a", "#262626", "#a3a3a3", "#fafafa"],
    "pastel": ["#fde2e4", "#e2ece9", "#cddafd", "#fff1e6"],
    "cyberpunk": ["#0f0529", "#ff2a6d", "#05d9e8", "#d1f7ff"],
}
_ROOM_KINDS = {
    "hallway": "hallway", "corridor": "hallway", "cellar": "cellar", "library": "library",
    "kitchen": "kitchen", "attic": "attic", "chapel": "chapel", "lab": "laboratory",
}
_ENTITY_WORDS = {
    "spooky": ["ghost", "flickering candle"], "haunted": ["ghost", "poltergeist"],
    "creepy": ["spider", "doll"], "dark": ["shadow"], "abandoned": ["dust pile", "broken chair"],
    "demon": ["imp", "demon"], "robot": ["drone", "terminal"],
}
_DEFAULT_ENTITIES = ["crate", "barrel", "lamp", "painting", "rug"]


def parse_input(body: dict[str, Any], *, require_seed: bool) -> dict[str, Any]:
    """Validated ``{"prompt", "seed", "style"}`` from a request body; else ``ValueError``
    whose message lists every problem ("; " between them), each naming its field and what
    is accepted, so a client fixes them all at once."""
    unknown = sorted(set(body) - set(INPUT_FIELDS))
    problems = [f"unknown field(s): {', '.join(unknown)}; accepted: {', '.join(INPUT_FIELDS)}"] if unknown else []
    prompt, seed, style = body.get("prompt"), body.get("seed"), body.get("style")
    problems += [p for p in (_prompt_problem(prompt), _seed_problem(seed, require_seed), _style_problem(style)) if p]
    if problems:
        raise ValueError("; ".join(problems))
    return {"prompt": prompt, "seed": seed, "style": style}


def _prompt_problem(prompt: Any) -> str | None:
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required and must be a non-empty string"
    if len(prompt) > PROMPT_MAX_CHARS:
        return f"prompt is {len(prompt)} characters; the limit is {PROMPT_MAX_CHARS}"
    return None


def _seed_problem(seed: Any, required: bool) -> str | None:
    if seed is None:
        return "seed is required" if required else None
    if isinstance(seed, bool) or not isinstance(seed, int):
        return f"seed must be an integer, got {json.dumps(seed)}"
    if not SEED_MIN <= seed <= SEED_MAX:
        return f"seed must fit a signed 64-bit integer ({SEED_MIN}..{SEED_MAX}), got {seed}"
    return None


def _style_problem(style: Any) -> str | None:
    if style is not None and not isinstance(style, str):
        return f"style must be a string, got {json.dumps(style)}"
    if style is not None and len(style) > STYLE_MAX_CHARS:
        return f"style is {len(style)} characters; the limit is {STYLE_MAX_CHARS}"
    return None


def canonical(obj: Any) -> bytes:
    """The byte-stable JSON encoding outputs are compared and digested in."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def build_scene(prompt: str, seed: int, style: str | None) -> dict[str, Any]:
    """The deterministic scene for these inputs (a few KB of JSON)."""
    key = canonical({"prompt": prompt, "seed": seed, "style": style})
    rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:16], "big"))
    words = re.findall(r"[a-z]+", prompt.lower())
    style_name = (style or "neutral").strip().lower() or "neutral"
    palette = _PALETTES.get(style_name) or [f"#{rng.randrange(0x1000000):06x}" for _ in range(4)]
    rooms = _rooms(rng, words)
    scene: dict[str, Any] = {
        "title": " ".join(words[:6]).title() or "Untitled",
        "style": style_name,
        "palette": palette,
        "rooms": rooms,
        "doors": [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(rooms)],
        "entities": _entities(rng, words, rooms),
        "lights": _lights(rng, words, rooms, palette),
    }
    scene["stats"] = {k: len(scene[k]) for k in ("rooms", "doors", "entities", "lights")}
    return {"seed": seed, "scene": scene, "digest": "sha256:" + hashlib.sha256(canonical(scene)).hexdigest()}


def _rooms(rng: random.Random, words: list[str]) -> list[dict[str, Any]]:
    kinds = [_ROOM_KINDS[w] for w in words if w in _ROOM_KINDS] or ["room"]
    rooms, x = [], 0
    for i in range(rng.randint(3, 7)):
        kind = kinds[i % len(kinds)]
        if kind == "hallway":
            width, height = rng.randint(8, 16), rng.randint(2, 3)
        else:
            width, height = rng.randint(4, 9), rng.randint(4, 9)
        rooms.append({"id": f"r{i}", "kind": kind, "x": x, "y": rng.randint(-2, 2), "w": width, "h": height})
        x += width + 1
    return rooms


def _entities(rng: random.Random, words: list[str], rooms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pool = [e for w in words for e in _ENTITY_WORDS.get(w, [])] or _DEFAULT_ENTITIES
    entities = []
    for i in range(rng.randint(len(rooms), 2 * len(rooms))):
        room = rng.choice(rooms)
        entities.append({"id": f"e{i}", "type": rng.choice(pool), "room": room["id"],
                         "x": room["x"] + rng.randrange(room["w"]), "y": room["y"] + rng.randrange(room["h"])})
    return entities


def _lights(rng: random.Random, words: list[str], rooms: list[dict[str, Any]],
            palette: list[str]) -> list[dict[str, Any]]:
    dim = any(w in words for w in ("spooky", "dark", "haunted", "creepy", "abandoned"))
    return [{"room": room["id"], "color": rng.choice(palette),
             "intensity": round(rng.uniform(0.1, 0.4) if dim else rng.uniform(0.5, 1.0), 3),
             "flicker": dim and rng.random() < 0.5}
            for room in rooms]
