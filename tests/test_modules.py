"""The module structure: imports run one way, and the store interface knows no backend."""

from __future__ import annotations

from conftest import ROOT
from importgraph import find_cycle, import_graph, imported_modules


def test_the_top_level_modules_import_each_other_without_a_cycle():
    graph = import_graph(ROOT)
    assert {"orchestrator", "dispatcher", "store", "dynamostore", "httpkit"} <= set(graph)
    assert "dynamostore" in graph["orchestrator"]  # the one place that picks a backend
    assert find_cycle(graph) is None


def test_find_cycle_reports_a_cycle_through_several_modules_and_a_self_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"store": {"store"}}) == ["store", "store"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_the_store_interface_and_memory_store_know_nothing_of_dynamodb():
    assert imported_modules(ROOT / "store.py") & {"dynamostore", "boto3", "botocore"} == set()


def test_only_the_dynamodb_store_and_the_aws_settings_import_boto3():
    importers = {p.stem for p in ROOT.glob("*.py") if imported_modules(p) & {"boto3", "botocore"}}
    assert importers == {"awsconfig", "dynamostore"}
