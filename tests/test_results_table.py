"""benchmarks/results.py's markdown: the README's results table."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def load_results(monkeypatch):
    """benchmarks/results.py as a module, with its folder on sys.path, as when it runs."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.spec_from_file_location("results", folder / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_equal_as_printed_are_equally_bold(monkeypatch):
    results = load_results(monkeypatch)
    rows = [{"data": "d", "protocol": "next-item", "model": "a", "recall@20": 0.12340425531914895,
             "mrr@20": 0.05, "first_recall@20": 0.2},
            {"data": "d", "protocol": "next-item", "model": "b", "recall@20": 0.12340425531914893,
             "mrr@20": 0.06, "first_recall@20": 0.1}]
    table = results.markdown(pd.DataFrame(rows))
    assert "| d | a | **0.1234** | 0.0500 | **0.2000** |" in table
    assert "| d | b | **0.1234** | **0.0600** | 0.1000 |" in table



def test_paired_table(monkeypatch):
    results = load_results(monkeypatch)
    paired = [{"data": "d", "protocol": "next-item", "metric": "mrr@20", "baseline": "x",
               "difference": 0.25, "standard_error": 0.1768, "z": 1.414, "n": 2}]
    assert "| d | next-item | mrr@20 | x | +0.2500 | 0.1768 | +1.4 |" in results.paired_markdown(paired)
