"""hrnn.tune, the quickstart, and the quickstart / evaluate / tune commands."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn import cli, datasets, quickstart
from hrnn.synthetic import make_log

FAST = {"epochs": 1, "hidden_dimension": 32, "n_sample": 32, "batch_size": 16, "bptt": 4, "num_threads": 1}


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    df = make_log(3_000, n_users=60, n_items=300, seed=1).rename(columns=str.lower)
    path = tmp_path_factory.mktemp("d") / "log.csv"
    df.to_csv(path, index=False)
    return path


def test_tune_finds_params_and_refits(log_csv):
    pytest.importorskip("optuna")
    space = {"learning_rate": ("float_log", (0.01, 0.3)), "recency_mask": ("categorical", (True, False))}
    r = hrnn.tune(log_csv, n_trials=3, metric="recall@20", space=space, base_params=FAST, random_state=0,
                  min_standard_errors=0)
    assert set(r.best_params) == {"learning_rate", "recency_mask"}
    assert len(r.trials) == 3 and r.best_score == r.trials["recall@20"].max()
    assert r.model.get_params()["learning_rate"] == r.best_params["learning_rate"]
    assert len(r.model.recommend(r.model.user_ids_[0], 5)[0]) == 5


def test_tune_starts_from_the_defaults(log_csv):
    pytest.importorskip("optuna")
    space = {"learning_rate": ("float_log", (0.01, 0.3)), "dropout": ("float", (0.0, 0.5))}
    r = hrnn.tune(log_csv, n_trials=2, metric="recall@20", space=space, base_params=FAST, random_state=0,
                  refit=False)
    defaults = hrnn.HRNN(**FAST).get_params()
    first = r.trials.iloc[0]
    assert first["learning_rate"] == defaults["learning_rate"] and first["dropout"] == defaults["dropout"]
    assert r.best_score >= first["recall@20"]
    # A space without the defaults (learning_rate 0.1 is outside) starts wherever the sampler goes;
    # dependent ranges that cannot cross are accepted.
    space = {"learning_rate": ("float", (0.2, 0.3)), "min_user_history_length_percentile": ("float", (0.0, 0.2)),
             "max_user_history_length_percentile": ("float", (0.5, 1.0))}
    r = hrnn.tune(log_csv, n_trials=1, metric="recall@20", space=space, base_params=FAST, random_state=0,
                  refit=False)
    assert 0.2 <= r.trials.iloc[0]["learning_rate"] <= 0.3
    assert r.trials.iloc[0]["min_user_history_length_percentile"] <= 0.2


def test_tune_keeps_the_defaults_unless_a_trial_is_clearly_better(log_csv):
    pytest.importorskip("optuna")
    space = {"learning_rate": ("float_log", (0.01, 0.3)), "recency_mask": ("categorical", (True, False))}
    kw = dict(n_trials=4, metric="recall@20", space=space, base_params=FAST, random_state=0, refit=False)
    plain = hrnn.tune(log_csv, min_standard_errors=0, **kw)
    first = plain.trials.iloc[0]
    assert plain.best_score == plain.trials["recall@20"].max() > first["recall@20"]  # the case tested
    kept = hrnn.tune(log_csv, min_standard_errors=1e6, **kw)
    assert kept.best_params == {"learning_rate": first["learning_rate"], "recency_mask": first["recency_mask"]}
    assert kept.best_score == first["recall@20"]
    # Defaults that train badly (learning rate 0.001, 1 epoch) are clearly beaten.
    kw = dict(n_trials=3, metric="recall@20", space={"learning_rate": ("float_log", (0.001, 0.5))},
              base_params={**FAST, "learning_rate": 0.001}, random_state=0)
    r = hrnn.tune(log_csv, refit=False, **kw)
    assert r.best_params["learning_rate"] != 0.001 and r.best_score > r.trials["recall@20"].iloc[0]
    # ... unless the evidence demanded is more than any trial gives; the refit model is the one kept.
    kept = hrnn.tune(log_csv, min_standard_errors=1e6, **kw)
    assert kept.best_params == {"learning_rate": 0.001} and kept.best_score == r.trials["recall@20"].iloc[0]
    assert kept.model.learning_rate == 0.001 and kept.model.user_ids_ is not None


def test_tune_is_seeded_by_random_state(log_csv, monkeypatch):
    """The same seed gives the same trials (sampler, splits and fits); the seed reaches every split."""
    pytest.importorskip("optuna")
    module = sys.modules["hrnn.tune"]
    seeds, real = [], module.evaluate
    monkeypatch.setattr(module, "evaluate", lambda *a, **kw: seeds.append(kw["random_state"]) or real(*a, **kw))
    space = {"learning_rate": ("float_log", (0.01, 0.3)), "dropout": ("float", (0.0, 0.5))}
    kw = dict(n_trials=3, metric="recall@20", space=space, base_params=FAST, random_state=3, refit=False)
    a, b = (hrnn.tune(log_csv, **kw).trials.filter(regex="^(?!.*seconds)") for _ in range(2))
    assert set(seeds) == {3} and len(seeds) == 6
    pd.testing.assert_frame_equal(a, b)
    assert a["learning_rate"].nunique() == 3  # the sampler moved


def test_log_dimensions_are_sampled_on_a_log_scale():
    logged = {}

    class Trial:
        def suggest_int(self, name, low, high, log=False):
            logged[name] = log
            return low

        suggest_float = suggest_int

        def suggest_categorical(self, name, choices):
            return choices[0]

    space = {"hidden_dimension": ("int_log", (32, 64)), "bptt": ("int", (1, 8)),
             "learning_rate": ("float_log", (0.01, 0.3)), "dropout": ("float", (0.0, 0.5)),
             "recency_mask": ("categorical", (True, False))}
    assert sys.modules["hrnn.tune"]._suggest(Trial(), space) == {
        "hidden_dimension": 32, "bptt": 1, "learning_rate": 0.01, "dropout": 0.0, "recency_mask": True}
    assert logged == {"hidden_dimension": True, "bptt": False, "learning_rate": True, "dropout": False}


def test_choice_needs_a_mean_above_the_standard_errors():
    from hrnn._validation import clearly_better
    noisy = np.array([1.0, -1.0] * 50 + [1.0])  # mean 0.01, standard error about 0.1
    assert not clearly_better(noisy) and clearly_better(noisy, 0.0)
    assert clearly_better(np.full(10, 0.1)) and not clearly_better(np.full(10, -0.1))
    assert clearly_better(np.r_[np.full(90, 0.2), np.full(10, -0.2)])
    assert not clearly_better(np.zeros(0)) and not clearly_better(np.ones(1))  # one event tells nothing


def test_choice_clusters_the_events_by_user():
    """One user's 50 events all better, two users' 50 each level: 50 paired events apart, but three
    users - the cluster-robust standard error (hrnn.paired_difference's) tells that from noise."""
    from hrnn._validation import _choose, clearly_better
    diff = np.r_[np.ones(50), np.zeros(100)]
    users = np.repeat(["a", "b", "c"], 50)
    assert clearly_better(diff) and not clearly_better(diff, groups=users)
    assert clearly_better(diff, groups=np.arange(150))  # one event per user: the plain rule
    second = [np.zeros(150), np.zeros(150)]
    assert _choose(("fallback", "other"), [np.zeros(150), diff], second, "fallback")[0] == "other"
    assert _choose(("fallback", "other"), [np.zeros(150), diff], second, "fallback", users)[0] == "fallback"
    # Many users each a little better: clearly better either way.
    many = np.tile([1.0, 0.0, 0.0], 50)
    assert clearly_better(many, groups=np.repeat(np.arange(50), 3))


def test_tune_rejects_bad_arguments(log_csv):
    with pytest.raises(TypeError, match="show_progress"):
        hrnn.tune(str(log_csv), n_trials=1, show_progress="yes")
    with pytest.raises(ValueError, match="metric"):
        hrnn.tune(log_csv, metric="auc")
    with pytest.raises(ValueError, match="n_trials"):
        hrnn.tune(log_csv, n_trials=0)
    for bad in (-1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="min_standard_errors"):
            hrnn.tune(log_csv, min_standard_errors=bad)
    with pytest.raises(ValueError, match="unknown HRNN hyperparameter"):
        hrnn.tune(log_csv, space={"nope": ("float", (0, 1))})
    # Checked before any trial runs, naming the entry (not an error from inside Optuna or a fit).
    with pytest.raises(ValueError, match=r"space\['dropout'\]: float_log needs 0 < low"):
        hrnn.tune(log_csv, space={"dropout": ("float_log", (0.0, 0.5))})
    with pytest.raises(ValueError, match=r"space\['hidden_dimension'\]: 1 is not a valid hidden_dimension"):
        hrnn.tune(log_csv, space={"hidden_dimension": ("int", (1, 64))})
    with pytest.raises(ValueError, match=r"space\['bptt'\]: 0 is not a valid bptt"):
        hrnn.tune(log_csv, space={"bptt": ("categorical", (4, 0))})
    # A float range draws floats: not valid for an integer hyperparameter; an int range needs ints.
    with pytest.raises(ValueError, match=r"space\['epochs'\]: 1.0 is not a valid epochs"):
        hrnn.tune(log_csv, space={"epochs": ("float", (1, 3))})
    with pytest.raises(ValueError, match=r"space\['bptt'\]: int needs \(low, high\) integers"):
        hrnn.tune(log_csv, space={"bptt": ("int", (1.5, 8))})
    # Each range valid alone, but a trial may draw min > max.
    with pytest.raises(ValueError, match=r"space\['min_user_history_length_percentile'\] = 0.5 and "
                                         r"space\['max_user_history_length_percentile'\] = 0.3 cannot be combined"):
        hrnn.tune(log_csv, space={"min_user_history_length_percentile": ("float", (0.0, 0.5)),
                                  "max_user_history_length_percentile": ("float", (0.3, 1.0))})


def test_a_failing_trial_raises_without_optunas_traceback(tmp_path, capfd):
    """Data the protocol cannot split (nobody has two sessions): the error reaches the caller
    once, as a one-line CLI error, without Optuna's logged traceback; Optuna's verbosity is the
    caller's again afterwards. A numpy integer is a valid n_trials."""
    optuna = pytest.importorskip("optuna")
    rows = [(f"u{u}", f"i{(u + k) % 50}", 1_000_000 + 7 * u + k) for u in range(200) for k in range(5)]
    path = tmp_path / "once.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    before = optuna.logging.get_verbosity()
    with pytest.raises(ValueError, match="2 or more sessions"):
        hrnn.tune(path, n_trials=np.int64(1), metric="recall@20", base_params={"epochs": 1})
    assert optuna.logging.get_verbosity() == before
    capfd.readouterr()
    assert cli.main(["tune", str(path), "--trials", "1", "--epochs", "1", "--metric", "recall@20"]) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Trial 0 failed" not in err
    assert err.strip().startswith("error:") and "2 or more sessions" in err


def test_tune_without_optuna_says_what_to_install(log_csv, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install optuna \(or, in hrnn's source folder, pip install '\.\[tune\]'\)"):
        hrnn.tune(log_csv, n_trials=1, base_params={"epochs": 1})


def test_tune_refuses_fixed_values_the_search_would_replace(log_csv):
    """A base parameter the space varies is the first trial's value; outside the space the search
    would silently replace it (and lose the first trial the choice falls back to)."""
    with pytest.raises(ValueError, match=r"base_params \{'n_sample': 16\} lie outside the search space"):
        hrnn.tune(log_csv, n_trials=1, base_params={"n_sample": 16})
    for bad in (-1, 0, float("inf"), True, "x"):
        with pytest.raises(ValueError, match="timeout"):
            hrnn.tune(log_csv, n_trials=1, timeout=bad)


def test_bundled_dataset_and_its_license():
    interactions, items = datasets.load_movielens_small()
    assert len(interactions) == 100_836 and {"user_id", "item_id", "timestamp"} <= set(interactions)
    assert {"item_id", "title"} <= set(items)
    folder = datasets.movielens_small_path()
    assert "redistribut" in (folder / "README.grouplens.txt").read_text().lower()
    assert (folder / "NOTICE.md").exists()


def test_quickstart_on_a_users_file(log_csv, capsys):
    results = quickstart.run(str(log_csv), epochs=1)
    out = capsys.readouterr().out
    assert set(results.model) == {"hrnn", "popularity", "markov", "repeat-rule", "session-knn"}
    assert set(results.protocol) == {"personalize", "next-item"}
    assert "precision@5" in out and "recall@20" in out and "hrnn recommends next" in out
    assert "sessions then arrived through put_events" in out and "Fitting" not in out  # no third fit
    by = results.set_index("protocol")
    assert by.loc["personalize", "precision@5"].between(0, 1).all()
    assert by.loc["next-item", "recall@20"].between(0, 1).all()


def test_quickstart_without_repeat_visits(tmp_path, capsys):
    """A log where nobody comes back (one session per user): the Personalize protocol, a word on
    why there is no next-item protocol, and recommendations from a fit on everything."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{int(rng.integers(200))}", 1_000_000 + 7 * u + k) for u in range(300) for k in range(5)]
    path = tmp_path / "once.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    results = quickstart.run(str(path), epochs=1)
    out = capsys.readouterr().out
    assert set(results.protocol) == {"personalize"} and len(results) == 5
    assert "no next-item protocol" in out and "Next-item protocol" not in out
    assert "trained on all the events" in out and "put_events" not in out
    assert "hrnn recommends next" in out


def one_event_last_sessions(path):
    """300 users, each with a 5-event session and, a day later, a 1-event last session."""
    rows = [(f"u{u}", f"i{(7 * u + 3 * k) % 100}", 1_000_000 + u + 10 * k + (100_000 if k == 5 else 0))
            for u in range(300) for k in range(6)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    return path


def test_quickstart_when_no_test_session_has_a_second_event(tmp_path, capsys):
    """recall@20 / mrr@20 are NaN (nothing ranked after a first event); the paired table
    leaves them out instead of failing on them."""
    path = one_event_last_sessions(tmp_path / "one.csv")
    with pytest.warns(RuntimeWarning, match="no test session has a second event"):
        results = quickstart.run(str(path), epochs=1)
    out = capsys.readouterr().out
    nxt = results[results.protocol == "next-item"]
    assert nxt["recall@20"].isna().all() and nxt["first_recall@20"].notna().all()
    paired = out.split("hrnn minus the best baseline")[1]
    assert "first_recall@20" in paired and "recall@20 " not in paired.replace("first_recall@20", "")


def test_tune_on_an_undefined_metric_says_so(tmp_path):
    pytest.importorskip("optuna")
    path = one_event_last_sessions(tmp_path / "one.csv")
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="recall@20 is undefined"):
        hrnn.tune(path, n_trials=1, metric="recall@20", base_params={"epochs": 1})


def test_evaluate_command_writes_undefined_metrics_as_null(tmp_path, capsys):
    """--json lines stay JSON (NaN is not) when no test session has a second event."""
    csv = one_event_last_sessions(tmp_path / "one.csv")
    model_path = tmp_path / "m.hrnn"
    assert cli.main(["train", str(csv), "-o", str(model_path), "--epochs", "1", "--no-progress",
                     "--num-threads", "1", "--hidden-dimension", "32"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(model_path), str(csv), "--json", "--protocol", "next-item"]) == 0
    out, err = capsys.readouterr()
    assert "no test session has a second event" in err
    row = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
    assert row["recall@20"] is None and row["mrr@20"] is None and 0 <= row["first_recall@20"] <= 1


def test_evaluate_command_without_a_next_item_protocol(tmp_path, capsys):
    """--protocol both on a log where nobody has two sessions: Personalize, and a note on stderr
    (stdout stays JSON), not an error after the first table."""
    rows = [(f"u{u}", f"i{(u + k) % 50}", 1_000_000 + 7 * u + k) for u in range(400) for k in range(5)]
    csv = tmp_path / "once.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(csv, index=False)
    model_path = tmp_path / "m.hrnn"
    assert cli.main(["train", str(csv), "-o", str(model_path), "--epochs", "1", "--no-progress",
                     "--num-threads", "1", "--hidden-dimension", "32"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(model_path), str(csv), "--json"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["protocol"] for r in rows] == ["personalize"]
    assert "no next-item protocol" in captured.err


def test_quickstart_and_evaluate_commands(log_csv, tmp_path, capsys):
    model_path = tmp_path / "m.hrnn"
    assert cli.main(["train", str(log_csv), "-o", str(model_path), "--epochs", "1", "--no-progress",
                     "--num-threads", "1", "--hidden-dimension", "32"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(model_path), str(log_csv), "--json", "--protocol", "next-item",
                     "--baselines"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scores, paired = rows[:5], rows[5:]
    assert scores[0]["model"] == "hrnn" and 0 <= scores[0]["recall@20"] <= 1
    assert [p["metric"] for p in paired] == quickstart.NEXT_ITEM and {p["kind"] for p in paired} == {"paired"}
    for p in paired:  # against the baseline row with the best score, hrnn's own row minus it
        best = max(scores[1:], key=lambda row: row[p["metric"]])
        assert p["baseline"] == best["model"]
        assert p["difference"] == pytest.approx(scores[0][p["metric"]] - best[p["metric"]])
    assert cli.main(["evaluate", str(model_path), str(log_csv), "--baselines"]) == 0
    out = capsys.readouterr().out
    assert "repeat-rule" in out and "personalize" in out
    # Each protocol's table is followed by hrnn's paired difference from its best baseline per metric.
    paired = out.split("hrnn minus the best baseline")[1:]
    assert len(paired) == 2
    for section, metrics in zip(paired, (quickstart.PERSONALIZE, quickstart.NEXT_ITEM)):
        section = section.split("\n\n")[0]
        assert {line.split()[1] for line in section.splitlines()[2:]} == set(metrics) - {"coverage"}
    assert cli.main(["evaluate", str(tmp_path / "missing.hrnn"), str(log_csv)]) == 2


def test_tune_command(log_csv, tmp_path, capsys):
    pytest.importorskip("optuna")
    out_path = tmp_path / "t.hrnn"
    assert cli.main(["tune", str(log_csv), "--trials", "2", "--epochs", "1", "--metric", "mrr@20",
                     "-o", str(out_path)]) == 0
    out, err = capsys.readouterr()
    assert "chosen mrr@20" in out
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("trial ")] == \
        ["trial 1/2", "trial 2/2"]  # progress while the search runs
    assert hrnn.load(out_path).get_params()["epochs"] == 1
    # With no evidence demanded, the chosen score is the best trial's.
    assert cli.main(["tune", str(log_csv), "--trials", "3", "--epochs", "1", "--metric", "recall@20",
                     "--min-standard-errors", "0"]) == 0
    out = capsys.readouterr().out
    header, *rows = [line.split() for line in out.split("\nchosen")[0].splitlines() if line.strip()]
    best = max(float(row[header.index("recall@20")]) for row in rows)
    assert f"chosen recall@20: {best:.4f}" in out


def test_quickstart_seeds_every_fit_and_split(monkeypatch):
    assert quickstart.contenders(2, 7)["hrnn"].get_params()["random_state"] == 7
    assert quickstart.contenders(2, 7, num_threads=1)["hrnn"].num_threads == 1
    seeds = []
    monkeypatch.setattr(quickstart, "evaluate", lambda model, table, **kw: seeds.append(kw["random_state"]) or (
        {m: 0.0 for m in quickstart.PERSONALIZE + quickstart.NEXT_ITEM}, None))
    quickstart.compare(pd.DataFrame(), {"a": None, "b": None}, random_state=7, out=io.StringIO())
    assert seeds == [7] * 4


def test_show_users_prints_the_latest_events_and_new_items(capsys):
    """The five newest events in time order (whatever the row order), then the recommendations,
    which leave out what the user has already consumed."""
    rows = [("u", f"i{t}", t) for t in range(25)] + [("v", "i0", 3)]
    table = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"]).sample(frac=1.0, random_state=0)
    asked = []

    class Model:
        def recommend(self, user, num_results, exclude_interacted=False):
            asked.append((user, num_results, exclude_interacted))
            return np.array(["new1", "new2"]), np.zeros(2)

    quickstart.show_users(Model(), table, {"i24": "Newest"}, n_users=1, n_items=2)
    out = capsys.readouterr().out
    assert asked == [("u", 2, True)]
    latest = out.split("latest:\n")[1].split("  hrnn")[0].split()
    assert latest == ["i20", "i21", "i22", "i23", "Newest"]
    assert "1. new1" in out and "2. new2" in out


def test_format_results_marks_the_best():
    df = pd.DataFrame([{"protocol": p, "model": m, **{k: v for k in quickstart.PERSONALIZE + quickstart.NEXT_ITEM}}
                       for p in ("personalize", "next-item") for m, v in (("a", 0.1), ("b", 0.2))])
    text = quickstart.format_results(df)
    assert "0.2000*" in text and "0.1000*" not in text and np.isfinite(df.select_dtypes(float).values).all()


def test_hrnn_is_paired_with_the_best_baseline_of_each_metric():
    def details(ranks):
        return pd.DataFrame({"USER_ID": ["a", "b", "a", "b"], "position": [0, 0, 1, 1],
                             "ITEM_ID": [1, 2, 3, 4], "rank": ranks})

    results = pd.DataFrame([
        {"protocol": "next-item", "model": "hrnn", "recall@20": 1.0, "mrr@20": 0.75, "first_recall@20": 0.5},
        {"protocol": "next-item", "model": "x", "recall@20": 0.5, "mrr@20": 0.5, "first_recall@20": 1.0},
        {"protocol": "next-item", "model": "y", "recall@20": 1.0, "mrr@20": 0.375, "first_recall@20": 0.5},
        {"protocol": "next-item", "model": "hrnn tuned", "recall@20": 1.0, "mrr@20": 1.0, "first_recall@20": 1.0}])
    dets = {("next-item", "hrnn"): details([1, 0, 1, 2]), ("next-item", "x"): details([1, 1, 1, 0]),
            ("next-item", "y"): details([0, 1, 2, 4]), ("next-item", "hrnn tuned"): details([1, 1, 1, 1])}
    paired = quickstart.against_best_baseline(results, dets)
    # The best baseline of each metric ("hrnn tuned" is not one).
    assert list(zip(paired.metric, paired.baseline, paired.difference)) == [
        ("recall@20", "y", 0.0), ("mrr@20", "x", 0.25), ("first_recall@20", "x", -0.5)]
    assert paired.standard_error[1] == pytest.approx(0.25)  # differences 0 and 0.5: sd 0.354, n 2
    text = quickstart.format_paired(paired)
    assert "mrr@20        x    +0.2500" in text and "+1.0" in text and "-0.5000" in text
