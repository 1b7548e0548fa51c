"""The evaluate / tune / quickstart commands hand every option to the library, and `hrnn evaluate`
scores the saved model's hyperparameters: spies stand in for the library functions, so these tests
see exactly what a command asked for (the library functions have their own tests)."""
import importlib
import json
from types import SimpleNamespace

import pandas as pd
import pytest

import hrnn
from hrnn import cli
from hrnn.synthetic import make_log


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(csv, model file): a model trained with non-default hyperparameters."""
    folder = tmp_path_factory.mktemp("options")
    csv = folder / "log.csv"
    make_log(3_000, n_users=60, n_items=300, seed=1).rename(columns=str.lower).to_csv(csv, index=False)
    model = folder / "m.hrnn"
    assert cli.main(["train", str(csv), "-o", str(model), "--epochs", "1", "--no-progress", "--num-threads", "1",
                     "--hidden-dimension", "32", "--learning-rate", "0.05"]) == 0
    return csv, model


def test_evaluate_scores_the_saved_hyperparameters_beside_the_baselines(saved, monkeypatch, capsys):
    csv, model = saved
    calls = []

    # Markov is the best baseline by its score; by the ranks, hrnn finds both later events, Markov one.
    recall = {"HRNN": 0.9, "Popularity": 0.1, "Markov": 0.6, "RepeatRule": 0.5, "SessionKNN": 0.2}

    def spy(estimator, table, protocol, random_state, return_details, return_estimator, fit_params):
        calls.append((estimator, protocol, random_state))
        # --no-minimums reaches hrnn's fit only (the baselines check no minimums)
        assert fit_params == ({"check_minimums": False} if isinstance(estimator, hrnn.HRNN) else None)
        assert return_details  # (what pairs hrnn with the best baseline)
        name = type(estimator).__name__
        ranks = [3, 1, 3, 2] if name == "HRNN" else [3, 1, 3, 40]
        details = pd.DataFrame({"USER_ID": [1, 1, 2, 2], "position": [0, 1, 0, 1], "rank": ranks})
        return {"recall@20": recall[name]}, details

    monkeypatch.setattr(importlib.import_module("hrnn.quickstart"), "evaluate", spy)
    capsys.readouterr()
    assert cli.main(["evaluate", str(model), str(csv), "--protocol", "next-item", "--baselines",
                     "--random-state", "7", "--json", "--no-minimums"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["model"] for row in lines[:5]] == ["hrnn", "popularity", "markov", "repeat-rule", "session-knn"]
    assert lines[2]["recall@20"] == 0.6
    # Then hrnn's paired difference from the best baseline of each metric the rows carry.
    assert lines[5:] == [{"kind": "paired", "protocol": "next-item", "metric": "recall@20", "baseline": "markov",
                          "difference": 0.5, "standard_error": 0.5, "z": 1.0, "n": 2, "users": 2}]
    # A fresh estimator with the file's hyperparameters (not hrnn's defaults), the baselines as they are.
    first = calls[0][0]
    assert isinstance(first, hrnn.HRNN) and first._engine is None
    # The file's model was trained unseeded: --random-state seeds the refit too (two runs agree).
    assert hrnn.load(model).random_state is None
    assert first.get_params() == {**hrnn.load(model).get_params(), "show_progress": False, "random_state": 7}
    assert (first.hidden_dimension, first.learning_rate) == (32, 0.05)
    assert not any(isinstance(est, hrnn.HRNN) for est, _, _ in calls[1:])
    assert {(protocol, seed) for _, protocol, seed in calls} == {("next-item", 7)}


def test_tune_command_passes_its_options_and_prints_the_chosen_score(saved, monkeypatch, capsys):
    csv, _ = saved
    calls = []
    # The best trial (0.31) was not clearly better than the defaults (0.30), which tune kept.
    trials = pd.DataFrame({"learning_rate": [0.1, 0.2], "ndcg@25": [0.30, 0.31]})

    def spy(data, **kw):
        calls.append((str(data), kw))
        return SimpleNamespace(best_params={"learning_rate": 0.1}, best_score=0.30, trials=trials, model=None)

    monkeypatch.setattr(importlib.import_module("hrnn.tune"), "tune", spy)
    capsys.readouterr()
    assert cli.main(["tune", str(csv), "--trials", "2", "--random-state", "9", "--timeout", "60",
                     "--epochs", "2", "--min-standard-errors", "3", "--no-minimums"]) == 0
    data, kw = calls[0]
    assert data == str(csv) and kw["metric"] == "ndcg@25"  # Personalize's HPO objective by default
    assert (kw["n_trials"], kw["random_state"], kw["timeout"], kw["min_standard_errors"]) == (2, 9, 60.0, 3.0)
    assert kw["base_params"] == {"epochs": 2} and kw["refit"] is False  # no -o: nothing to refit for
    assert kw["fit_params"] == {"check_minimums": False} and kw["show_progress"] is True
    assert 'chosen ndcg@25: 0.3000 with {"learning_rate": 0.1}' in capsys.readouterr().out


def test_quickstart_command_passes_its_options(saved, monkeypatch):
    csv, _ = saved
    calls = []
    monkeypatch.setattr(importlib.import_module("hrnn.quickstart"), "run", lambda *a, **kw: calls.append((a, kw)))
    assert cli.main(["quickstart", "--data", str(csv), "--epochs", "3", "--random-state", "4",
                     "--item-col", "item_id", "--no-minimums", "--num-threads", "1"]) == 0
    (data, columns), kw = calls[0]
    assert data == str(csv) and columns["ITEM_ID"] == "item_id"
    assert kw == {"epochs": 3, "random_state": 4, "fit_params": {"check_minimums": False}, "num_threads": 1}
    assert cli.main(["quickstart"]) == 0 and calls[1][1]["num_threads"] == 0  # all cores by default


def test_inspect_passes_its_options(saved, monkeypatch, capsys):
    csv, _ = saved
    calls = []
    monkeypatch.setattr(importlib.import_module("hrnn.describe"), "describe",
                        lambda data, **kw: calls.append((str(data), kw)) or "summary")
    assert cli.main(["inspect", str(csv), "--min-pct", "0.1", "--max-pct", "0.9", "--session-gap", "60",
                     "--event-type", "click", "--event-value-threshold", "2.5", "--event-type-col", "kind",
                     "--event-value-col", "stars"]) == 0
    data, kw = calls[0]
    assert data == str(csv) and (kw["min_pct"], kw["max_pct"], kw["session_gap"]) == (0.1, 0.9, 60.0)
    assert kw["event_type"] == ["click"] and kw["event_value_threshold"] == 2.5
    assert kw["columns"] == {"EVENT_TYPE": "kind", "EVENT_VALUE": "stars"}
    assert capsys.readouterr().out == "summary\n"


def test_recommend_finds_the_integer_ids_of_a_mixed_id_model(tmp_path, capsys):
    """Ids read from the command line are text: "12" is user 12 when the model's ids mix
    integers and strings, and "s13" stays a string."""
    df = make_log(3_000, n_users=60, n_items=300, seed=1)
    df["USER_ID"] = [u if u % 2 == 0 else f"s{u}" for u in df["USER_ID"].tolist()]
    model = hrnn.HRNN(epochs=1, hidden_dimension=32, num_threads=1, random_state=0, show_progress=False).fit(df)
    path = tmp_path / "mixed.hrnn"
    model.save(path)
    ids = model.user_ids_.tolist()
    for user in (next(u for u in ids if isinstance(u, int)), next(u for u in ids if isinstance(u, str))):
        capsys.readouterr()
        assert cli.main(["recommend", str(path), "--user", str(user), "--json", "-n", "5"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["userId"] == user and got["recommendedItems"] == model.recommend(user, 5)[0].tolist()


def test_evaluate_scores_every_model_on_the_events_the_saved_filters_keep(tmp_path, capsys):
    """A model trained on purchases only: the baselines are scored on the same filtered log, so
    the paired differences pair up (they failed with "different splits" on next-item, and paired
    different held-out events without a word on personalize)."""
    df = make_log(3_000, n_users=60, n_items=300, seed=1)
    df["event_type"] = ["view" if i % 4 == 0 else "buy" for i in range(len(df))]
    csv, model = tmp_path / "typed.csv", tmp_path / "typed.hrnn"
    df.to_csv(csv, index=False)
    assert cli.main(["train", str(csv), "-o", str(model), "--epochs", "1", "--no-progress", "--num-threads",
                     "1", "--hidden-dimension", "32", "--event-type", "buy", "--no-minimums"]) == 0
    assert "after the event filters" in capsys.readouterr().out
    assert cli.main(["evaluate", str(model), str(csv), "--baselines", "--json", "--no-minimums"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    paired = [row for row in lines if row.get("kind") == "paired"]
    assert {row["protocol"] for row in paired} == {"personalize", "next-item"}
    next_item = [row for row in lines if row.get("kind") != "paired" and row["protocol"] == "next-item"]
    assert len({row["n_users"] for row in next_item}) == 1


def test_evaluate_keeps_the_seed_a_model_was_trained_with(saved, tmp_path, monkeypatch, capsys):
    csv, _ = saved
    seeded = tmp_path / "seeded.hrnn"
    assert cli.main(["train", str(csv), "-o", str(seeded), "--epochs", "1", "--no-progress",
                     "--num-threads", "1", "--random-state", "3"]) == 0
    seeds = []

    def spy(estimator, table, protocol, random_state, **kw):
        seeds.append((estimator.random_state, random_state))
        return {"recall@20": 0.5}, pd.DataFrame({"USER_ID": [1], "position": [0], "rank": [1]})

    monkeypatch.setattr(importlib.import_module("hrnn.quickstart"), "evaluate", spy)
    assert cli.main(["evaluate", str(seeded), str(csv), "--protocol", "next-item", "--random-state", "7",
                     "--json"]) == 0
    assert seeds == [(3, 7)]  # the model's own seed; the split's from the command line
