"""Unit tests for scene: input validation messages and the deterministic scene."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import scene

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN_DIGEST = "sha256:03fbeb1896a09bced23d0f6623db3cb77dc6ad44a61553c484011bcd7ef13f62"


# -- parse_input ------------------------------------------------------------------------


def test_parse_input_returns_the_three_fields_with_none_for_absent_optionals():
    assert scene.parse_input({"prompt": "a hall"}, require_seed=False) == {"prompt": "a hall", "seed": None, "style": None}
    assert scene.parse_input({"prompt": "a hall", "seed": -5, "style": "noir"}, require_seed=True) == {
        "prompt": "a hall", "seed": -5, "style": "noir"}


def test_parse_input_accepts_the_bounds():
    body = {"prompt": "p" * 1000, "seed": 2**63 - 1, "style": "s" * 64}
    assert scene.parse_input(body, require_seed=True) == body
    assert scene.parse_input({"prompt": "p", "seed": -(2**63)}, require_seed=True)["seed"] == -9223372036854775808


@pytest.mark.parametrize(("body", "message"), [
    ({"prompt": "x", "colour": "red", "Seed": 1},
     "unknown field(s): Seed, colour; accepted: prompt, seed, style"),
    ({}, "prompt is required and must be a non-empty string"),
    ({"prompt": ""}, "prompt is required and must be a non-empty string"),
    ({"prompt": " \t\n"}, "prompt is required and must be a non-empty string"),
    ({"prompt": None}, "prompt is required and must be a non-empty string"),
    ({"prompt": 42}, "prompt is required and must be a non-empty string"),
    ({"prompt": ["a"]}, "prompt is required and must be a non-empty string"),
    ({"prompt": "p" * 1001}, "prompt is 1001 characters; the limit is 1000"),
    ({"prompt": "x", "seed": True}, "seed must be an integer, got true"),
    ({"prompt": "x", "seed": False}, "seed must be an integer, got false"),
    ({"prompt": "x", "seed": "123"}, 'seed must be an integer, got "123"'),
    ({"prompt": "x", "seed": 1.0}, "seed must be an integer, got 1.0"),
    ({"prompt": "x", "seed": [1]}, "seed must be an integer, got [1]"),
    ({"prompt": "x", "seed": 2**63},
     "seed must fit a signed 64-bit integer (-9223372036854775808..9223372036854775807), got 9223372036854775808"),
    ({"prompt": "x", "seed": -(2**63) - 1},
     "seed must fit a signed 64-bit integer (-9223372036854775808..9223372036854775807), got -9223372036854775809"),
    ({"prompt": "x", "style": 5}, "style must be a string, got 5"),
    ({"prompt": "x", "style": ["doom"]}, 'style must be a string, got ["doom"]'),
    ({"prompt": "x", "style": True}, "style must be a string, got true"),
    ({"prompt": "x", "style": "s" * 65}, "style is 65 characters; the limit is 64"),
])
def test_parse_input_errors_name_the_field_and_what_is_accepted(body, message):
    with pytest.raises(ValueError) as info:
        scene.parse_input(body, require_seed=False)
    assert str(info.value) == message


@pytest.mark.parametrize("body", [{"prompt": "x"}, {"prompt": "x", "seed": None}])
def test_parse_input_requires_a_seed_when_asked(body):
    with pytest.raises(ValueError) as info:
        scene.parse_input(body, require_seed=True)
    assert str(info.value) == "seed is required"


def test_parse_input_lists_every_problem_each_naming_its_field():
    """Before: only the first problem, so a client fixed one field per round trip."""
    with pytest.raises(ValueError) as info:
        scene.parse_input({"prompt": "", "seed": "7", "style": 5, "colour": "red"}, require_seed=False)
    assert str(info.value) == ("unknown field(s): colour; accepted: prompt, seed, style; "
                               "prompt is required and must be a non-empty string; "
                               'seed must be an integer, got "7"; style must be a string, got 5')
    with pytest.raises(ValueError) as info:
        scene.parse_input({"prompt": "p" * 1001, "style": "s" * 65}, require_seed=True)
    assert str(info.value) == ("prompt is 1001 characters; the limit is 1000; seed is required; "
                               "style is 65 characters; the limit is 64")


def test_parse_input_does_not_modify_the_body():
    body = {"prompt": "x", "seed": 1}
    scene.parse_input(body, require_seed=False)
    assert body == {"prompt": "x", "seed": 1}


# -- build_scene ------------------------------------------------------------------------


def test_work_phases_are_the_eight_named_steps():
    assert scene.WORK_PHASES == (
        "interpret prompt", "seed generator", "lay out rooms", "connect doors",
        "place entities", "light scene", "dress materials", "bake digest",
    )


def test_golden_scene_for_a_spooky_hallway():
    out = scene.build_scene("a spooky hallway", 123, "doom")
    assert out["seed"] == 123
    assert out["digest"] == GOLDEN_DIGEST
    s = out["scene"]
    assert (s["title"], s["style"], s["palette"], s["stats"]) == (
        "A Spooky Hallway", "doom", ["#3b0a0a", "#7a1f1f", "#c2410c", "#1c1917"],
        {"rooms": 5, "doors": 4, "entities": 10, "lights": 5})
    assert {room["kind"] for room in s["rooms"]} == {"hallway"}
    assert {e["type"] for e in s["entities"]} == {"ghost", "flickering candle"}
    assert s["doors"] == [{"from": "r0", "to": "r1"}, {"from": "r1", "to": "r2"},
                          {"from": "r2", "to": "r3"}, {"from": "r3", "to": "r4"}]


def test_digest_is_the_sha256_of_the_sorted_compact_scene_json():
    out = scene.build_scene("a spooky hallway", 123, "doom")
    encoded = json.dumps(out["scene"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert out["digest"] == "sha256:" + hashlib.sha256(encoded).hexdigest()


def test_equal_inputs_give_byte_identical_output():
    first = scene.canonical(scene.build_scene("a dark robot lab", 987654321, "cyberpunk"))
    second = scene.canonical(scene.build_scene("a dark robot lab", 987654321, "cyberpunk"))
    assert first == second


def test_output_does_not_depend_on_the_process_hash_seed():
    code = "import scene; print(scene.build_scene('a spooky hallway', 123, 'doom')['digest'])"
    for hash_seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60, check=True)
        assert out.stdout.strip() == GOLDEN_DIGEST


@pytest.mark.parametrize(("prompt", "seed", "style"), [
    ("a spooky hallway", 124, "doom"),
    ("a spooky hallway", -123, "doom"),
    ("a spooky hallway", 123, "noir"),
    ("a spooky hallway", 123, None),
    ("a spooky hallway!", 123, "doom"),
])
def test_any_different_input_gives_a_different_digest(prompt, seed, style):
    assert scene.build_scene(prompt, seed, style)["digest"] != GOLDEN_DIGEST


def test_seeds_give_many_different_scenes():
    digests = {scene.build_scene("a hallway", seed, None)["digest"] for seed in range(50)}
    assert len(digests) == 50


@pytest.mark.parametrize(("style", "name", "palette"), [
    ("doom", "doom", ["#3b0a0a", "#7a1f1f", "#c2410c", "#1c1917"]),
    ("noir", "noir", ["#0a0a0a", "#262626", "#a3a3a3", "#fafafa"]),
    ("pastel", "pastel", ["#fde2e4", "#e2ece9", "#cddafd", "#fff1e6"]),
    ("cyberpunk", "cyberpunk", ["#0f0529", "#ff2a6d", "#05d9e8", "#d1f7ff"]),
    ("  NoIr ", "noir", ["#0a0a0a", "#262626", "#a3a3a3", "#fafafa"]),
])
def test_known_styles_use_their_palette(style, name, palette):
    s = scene.build_scene("a room", 1, style)["scene"]
    assert (s["style"], s["palette"]) == (name, palette)
    assert {light["color"] for light in s["lights"]} <= set(palette)


@pytest.mark.parametrize(("style", "name"), [(None, "neutral"), ("", "neutral"), ("   ", "neutral"), ("Vapor Wave", "vapor wave")])
def test_unknown_or_absent_styles_get_four_seeded_colours(style, name):
    s = scene.build_scene("a room", 7, style)["scene"]
    assert s["style"] == name
    assert len(s["palette"]) == 4
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in s["palette"]), s["palette"]
    assert {light["color"] for light in s["lights"]} <= set(s["palette"])


def test_unknown_style_palette_depends_on_the_seed():
    palettes = {tuple(scene.build_scene("a room", seed, "vapor wave")["scene"]["palette"]) for seed in range(10)}
    assert len(palettes) == 10


def test_prompt_words_choose_room_kinds_entities_and_title():
    s = scene.build_scene("The haunted LIBRARY and cellar, with 3 robots", 5, None)["scene"]
    assert s["title"] == "The Haunted Library And Cellar With"
    assert {room["kind"] for room in s["rooms"]} <= {"library", "cellar"}
    assert {e["type"] for e in s["entities"]} <= {"ghost", "poltergeist"}


def test_prompt_without_words_gets_an_untitled_scene_of_plain_rooms():
    s = scene.build_scene("1234 !!", 5, None)["scene"]
    assert s["title"] == "Untitled"
    assert {room["kind"] for room in s["rooms"]} == {"room"}
    assert {e["type"] for e in s["entities"]} <= {"crate", "barrel", "lamp", "painting", "rug"}


def test_scene_structure_is_consistent():
    for seed in range(30):
        s = scene.build_scene("a creepy abandoned chapel", seed, "noir")["scene"]
        room_ids = [room["id"] for room in s["rooms"]]
        assert 3 <= len(room_ids) <= 7
        assert s["doors"] == [{"from": a, "to": b} for a, b in itertools.pairwise(room_ids)]
        assert len(room_ids) <= len(s["entities"]) <= 2 * len(room_ids)
        assert [light["room"] for light in s["lights"]] == room_ids
        assert all(0.1 <= light["intensity"] <= 0.4 for light in s["lights"])  # "creepy": dim
        rooms = {room["id"]: room for room in s["rooms"]}
        for e in s["entities"]:
            r = rooms[e["room"]]
            assert r["x"] <= e["x"] < r["x"] + r["w"] and r["y"] <= e["y"] < r["y"] + r["h"]


def test_output_stays_under_16_kb_for_the_largest_inputs():
    words = "spooky haunted creepy dark abandoned demon robot hallway cellar library kitchen attic chapel lab "
    prompt = (words * 20)[:scene.PROMPT_MAX_CHARS]
    largest = max(len(scene.canonical(scene.build_scene(prompt, seed, "x" * scene.STYLE_MAX_CHARS)))
                  for seed in range(200))
    assert largest < 16 * 1024
