"""benchmarks/results.py's markdown: the README's results table."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def load_results():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results.py"
    spec = importlib.util.spec_from_file_location("results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_equal_as_printed_are_equally_bold():
    results = load_results()
    rows = [{"data": "d", "protocol": "next-item", "model": "a", "recall@20": 0.12340425531914895,
             "mrr@20": 0.05, "first_recall@20": 0.2},
            {"data": "d", "protocol": "next-item", "model": "b", "recall@20": 0.12340425531914893,
             "mrr@20": 0.06, "first_recall@20": 0.1}]
    table = results.markdown(pd.DataFrame(rows))
    assert "| d | a | **0.1234** | 0.0500 | **0.2000** |" in table
    assert "| d | b | **0.1234** | **0.0600** | 0.1000 |" in table


def test_hrnn_is_paired_with_the_best_baseline_of_each_metric():
    results = load_results()

    def details(ranks):
        return pd.DataFrame({"USER_ID": ["a", "b", "a", "b"], "position": [0, 0, 1, 1],
                             "ITEM_ID": [1, 2, 3, 4], "rank": ranks})

    rows = [{"model": "hrnn", "recall@20": 1.0, "mrr@20": 0.75, "first_recall@20": 0.5},
            {"model": "x", "recall@20": 0.5, "mrr@20": 0.5, "first_recall@20": 1.0},
            {"model": "y", "recall@20": 1.0, "mrr@20": 0.375, "first_recall@20": 0.5},
            {"model": "hrnn tuned", "recall@20": 1.0, "mrr@20": 1.0, "first_recall@20": 1.0}]
    dets = {"hrnn": [details([1, 0, 1, 2])], "x": [details([1, 1, 1, 0])], "y": [details([0, 1, 2, 4])],
            "hrnn tuned": [details([1, 1, 1, 1])]}
    paired = results.against_best_baseline(rows, dets, "d", "next-item")
    assert [(p["metric"], p["baseline"], p["difference"]) for p in paired] == [
        ("recall@20", "y", 0.0), ("mrr@20", "x", 0.25), ("first_recall@20", "x", -0.5)]
    table = results.paired_markdown(paired)  # differences 0 and 0.5 per event: standard error 0.25 / sqrt(2)
    assert "| d | next-item | mrr@20 | x | +0.2500 | 0.1768 | +1.4 |" in table
