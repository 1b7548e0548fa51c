"""The ``hrnn train`` and ``hrnn recommend`` commands (``inspect`` is in test_describe.py)."""
from __future__ import annotations

import functools
import gzip
import inspect
import io
import json

import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn import cli, cli_train
from hrnn.cli import main
from hrnn.synthetic import make_log

# Small and fast: one thread (deterministic, and quick on a shared machine), tiny sizes.
FAST = ["--epochs", "2", "--hidden-dimension", "32", "--n-sample", "32", "--num-threads", "1",
        "--random-state", "0", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CSV of 3,000 events / 60 users (above Personalize's minimums) and a model trained on it
    by ``hrnn train``; returns (csv, model path, the train command's stdout)."""
    folder = tmp_path_factory.mktemp("cli")
    csv = folder / "interactions.csv"
    make_log(n_events=3000, n_users=60, n_items=200, seed=1).to_csv(csv, index=False)
    model = folder / "model.hrnn"
    with pytest.MonkeyPatch.context() as mp:
        out = io.StringIO()
        mp.setattr("sys.stdout", out)
        assert main(["train", str(csv), "-o", str(model)] + FAST) == 0
    return csv, model, out.getvalue()


def one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------- train

class TestTrain:
    def test_summary(self, trained):
        csv, model_path, out = trained
        lines = dict(line.split(None, 1) if not line.startswith("final loss")
                     else ("final loss", line.split()[-1]) for line in out.splitlines())
        assert lines["model"] == str(model_path)
        assert lines["users"] == "60" and lines["events"] == "3,000" and lines["epochs"] == "2"
        model = hrnn.load(model_path)
        assert lines["items"] == f"{len(model.item_ids_):,}"
        assert lines["seconds"].split()[0].replace(".", "").isdigit()
        assert lines["events/s"].split()[0].replace(",", "").isdigit()
        assert np.isfinite(float(lines["final loss"]))

    def test_flags_set_params_and_the_rest_keep_defaults(self, trained):
        model = hrnn.load(trained[1])
        defaults = {k: p.default for k, p in
                    inspect.signature(hrnn.HRNN.__init__).parameters.items() if k != "self"}
        given = {"epochs": 2, "hidden_dimension": 32, "n_sample": 32, "num_threads": 1,
                 "random_state": 0, "show_progress": False}
        assert model.get_params() == {**defaults, **given}

    def test_every_flag_maps_to_an_hrnn_parameter(self):
        names = set(hrnn.HRNN._param_names())
        params = [param for _, param, _, _ in cli_train._TRAIN_FLAGS]
        assert len(set(params)) == len(params) and set(params) <= names
        # Every hyperparameter can be set from the command line.
        assert set(params) == names

    def test_parsing(self):
        args = cli.build_parser().parse_args([
            "train", "d.csv", "-o", "m.hrnn", "--hidden-dimension", "64", "--bptt", "8",
            "--no-recency-mask", "--max-pct", "0.9", "--min-user-history-length-percentile",
            "0.1", "--event-type", "click", "--event-type", "buy", "--learning-rate", "0.1",
            "--optimizer", "adam", "--loss", "bpr-max", "--tie-embeddings", "--no-logq",
            "--session-gap", "600", "--event-value-threshold", "2.5", "--no-progress",
            "--no-repeat"])
        params = cli_train._train_params(args)
        assert params == {"hidden_dimension": 64, "bptt": 8, "recency_mask": False,
                          "max_user_history_length_percentile": 0.9,
                          "min_user_history_length_percentile": 0.1,
                          "event_type": ["click", "buy"], "learning_rate": 0.1,
                          "optimizer": "adam", "loss": "bpr-max", "tie_embeddings": True,
                          "logq": False, "session_gap": 600.0, "event_value_threshold": 2.5,
                          "show_progress": False, "repeat": False}
        hrnn.HRNN(**params)  # valid
        one = cli.build_parser().parse_args(["train", "d.csv", "-o", "m", "--event-type", "x"])
        assert cli_train._train_params(one) == {"event_type": "x"}
        none = cli.build_parser().parse_args(["train", "d.csv", "-o", "m"])
        assert cli_train._train_params(none) == {}  # nothing given: HRNN's own defaults
        for text, value in (("auto", "auto"), ("1.5", 1.5), ("0", 0.0)):
            w = cli.build_parser().parse_args(["train", "d.csv", "-o", "m", "--transition-weight", text])
            assert cli_train._train_params(w) == {"transition_weight": value}
        start = cli.build_parser().parse_args(["train", "d.csv", "-o", "m", "--session-start-mix", "0.75",
                                               "--session-start-sources", "off", "--session-start-neighbors", "0.5"])
        assert cli_train._train_params(start) == {"session_start_mix": 0.75, "session_start_sources": False,
                                                  "session_start_neighbors": 0.5}
        for text, value in (("auto", "auto"), ("on", True)):
            s = cli.build_parser().parse_args(["train", "d.csv", "-o", "m", "--session-start-sources", text])
            assert cli_train._train_params(s) == {"session_start_sources": value}

    def test_column_overrides_and_string_ids(self, tmp_path, capsys):
        df = make_log(n_events=1500, n_users=40, n_items=100, seed=2)
        df = pd.DataFrame({"who": "u" + df["USER_ID"].astype(str), "what": df["ITEM_ID"],
                           "when": df["TIMESTAMP"]})
        csv, model = tmp_path / "renamed.csv", tmp_path / "m.hrnn"
        df.to_csv(csv, index=False)
        assert main(["train", str(csv), "-o", str(model), "--user-col", "who", "--item-col",
                     "what", "--time-col", "when"] + FAST) == 0
        capsys.readouterr()
        assert main(["recommend", str(model), "--user", "u3", "-n", "4", "--json"]) == 0
        out, err = capsys.readouterr()
        got = json.loads(out)
        items, scores = hrnn.load(model).recommend("u3", 4)
        assert got == {"userId": "u3", "recommendedItems": items.tolist(),
                       "scores": pytest.approx(scores.tolist())}
        assert err == ""

    def test_defaults_in_help_come_from_hrnn(self, capsys):
        assert main(["train", "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split()).split("hyperparameters (", 1)[1]
        sig = inspect.signature(hrnn.HRNN.__init__).parameters
        for flag, param in [("--hidden-dimension H", "hidden_dimension"), ("--epochs N", "epochs"),
                            ("--n-sample N", "n_sample"), ("--bptt STEPS", "bptt")]:
            text = out.split(flag, 1)[1].split("--", 1)[0]
            assert f"(default: {sig[param].default})" in text, (flag, text)


# --------------------------------------------------------------------------------- recommend

def history_items(csv, user):
    df = pd.read_csv(csv)
    return set(df.loc[df["USER_ID"] == user, "ITEM_ID"])


class TestRecommendOne:
    def test_text(self, trained, capsys):
        _, model_path, _ = trained
        assert main(["recommend", str(model_path), "--user", "3", "-n", "7"]) == 0
        out, err = capsys.readouterr()
        assert err == ""  # "3" was found as the integer user 3: no unknown-user warning
        rows = [line.split("\t") for line in out.splitlines()]
        items, scores = hrnn.load(model_path).recommend(3, num_results=7)
        assert [int(i) for i, _ in rows] == items.tolist()
        assert np.allclose([float(s) for _, s in rows], scores, rtol=1e-6)
        assert len(rows) == 7

    def test_text_quotes_ids_that_would_break_a_line(self, tmp_path, capsys):
        df = make_log(n_events=600, n_users=20, n_items=12, seed=2).drop_duplicates()
        odd = {0: "tab\there", 1: "two\nlines", 2: "cr\rhere", 3: '"quoted"'}
        df["ITEM_ID"] = [odd.get(i, f"item {i}") for i in df["ITEM_ID"]]
        model = hrnn.HRNN(epochs=1, hidden_dimension=32, n_sample=8, num_threads=1, show_progress=False,
                          random_state=0).fit(df, check_minimums=False)
        path = tmp_path / "odd.hrnn"
        model.save(path)
        user = df["USER_ID"].iloc[0]
        assert main(["recommend", str(path), "--user", str(user), "-n", "12"]) == 0
        rows = [line.rsplit("\t", 1) for line in capsys.readouterr().out.split("\n")[:-1]]
        ids = [json.loads(i) if i.startswith('"') else i for i, _ in rows]
        assert ids == model.recommend(user, num_results=12)[0].tolist()
        assert set(odd.values()) <= set(ids)

    def test_default_count_is_recommends(self, trained, capsys):
        assert main(["recommend", str(trained[1]), "--user", "3"]) == 0
        n = inspect.signature(hrnn.HRNN.recommend).parameters["num_results"].default
        assert len(capsys.readouterr().out.splitlines()) == n

    def test_json_and_exclude_interacted(self, trained, capsys):
        csv, model_path, _ = trained
        assert main(["recommend", str(model_path), "--user", "5", "-n", "10", "--json",
                     "--exclude-interacted"]) == 0
        line = capsys.readouterr().out
        assert line.count("\n") == 1
        got = json.loads(line)
        assert got["userId"] == 5
        assert all(type(i) is int for i in got["recommendedItems"])
        assert all(type(s) is float for s in got["scores"])
        assert got["scores"] == sorted(got["scores"], reverse=True)
        assert not set(got["recommendedItems"]) & history_items(csv, 5)
        items, _ = hrnn.load(model_path).recommend(5, 10, exclude_interacted=True)
        assert got["recommendedItems"] == items.tolist()

    def test_new_session(self, trained, capsys, tmp_path):
        _, model_path, _ = trained
        model = hrnn.load(model_path)
        assert main(["recommend", str(model_path), "--user", "5", "-n", "10", "--json", "--new-session"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["recommendedItems"] == model.recommend(5, 10, new_session=True)[0].tolist()
        users = tmp_path / "users.txt"
        users.write_text("1\n2\n5\n")
        assert main(["recommend", str(model_path), "--users", str(users), "-n", "10", "--new-session"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["recommendedItems"] for r in rows] == model.recommend_batch([1, 2, 5], 10, new_session=True)[0].tolist()
        # The flag changes the answers of this model (else the test would not tell).
        assert any(model.recommend(u, 10)[0].tolist() != r["recommendedItems"] for u, r in zip([1, 2, 5], rows))

    def test_unknown_user_gets_popular_items_with_a_warning(self, trained, capsys):
        assert main(["recommend", str(trained[1]), "--user", "nobody", "-n", "3"]) == 0
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == 3
        assert err.startswith("warning: user 'nobody' is not in the model")
        assert err.count("\n") == 1

    def test_output_file(self, trained, tmp_path, capsys):
        path = tmp_path / "one.json"
        assert main(["recommend", str(trained[1]), "--user", "3", "-n", "2", "--json",
                     "-o", str(path)]) == 0
        assert json.loads(path.read_text())["userId"] == 3
        assert capsys.readouterr().out == ""
        packed = tmp_path / "one.jsonl.gz"  # a .gz name gets gzip, not plain text
        assert main(["recommend", str(trained[1]), "--user", "3", "-n", "2", "--json",
                     "-o", str(packed)]) == 0
        with gzip.open(packed, "rt", encoding="utf-8") as f:
            assert json.loads(f.read()) == json.loads(path.read_text())


class TestRecommendBatch:
    def test_json_lines(self, trained, tmp_path, capsys, monkeypatch):
        _, model_path, _ = trained
        users = tmp_path / "users.txt"
        users.write_text('3\n{"userId": "7"}\n\n{"userId": 11.0, "itemId": "x"}\nnobody\n  12  \n')
        calls = []
        real = hrnn.HRNN.recommend_batch

        def counting(self, *a, **k):
            calls.append(a[0])
            return real(self, *a, **k)

        @functools.wraps(hrnn.HRNN.recommend)  # keeps the signature the parser reads
        def no_single(*a, **k):
            raise AssertionError("the batch path must not call recommend per user")

        monkeypatch.setattr(hrnn.HRNN, "recommend_batch", counting)
        monkeypatch.setattr(hrnn.HRNN, "recommend", no_single)
        out = tmp_path / "out.jsonl"
        assert main(["recommend", str(model_path), "--users", str(users), "-o", str(out),
                     "-n", "5"]) == 0
        assert calls == [[3, 7, 11, "nobody", 12]]  # one call, ids converted
        stdout, err = capsys.readouterr()
        assert stdout == f"wrote recommendations for 5 users to {out}\n"
        assert err.startswith("warning: user 'nobody' is not in the model")
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["userId"] for r in lines] == [3, 7, 11, "nobody", 12]
        items, scores = real(hrnn.load(model_path), [3, 7, 11, "nobody", 12], 5)
        for r, row in enumerate(lines):
            assert set(row) == {"userId", "recommendedItems", "scores"}
            assert all(type(i) is int for i in row["recommendedItems"])
            assert all(type(s) is float for s in row["scores"])
            assert row["recommendedItems"] == items[r].tolist()
            assert np.allclose(row["scores"], scores[r], rtol=1e-6)

    def test_personalize_output_lines(self, trained, tmp_path, capsys):
        _, model_path, _ = trained
        users = tmp_path / "users.txt"
        users.write_text('{"userId": "3", "itemId": "x"}\nnobody\n007\n')
        assert main(["recommend", str(model_path), "--users", str(users), "-n", "3", "--format",
                     "personalize"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        items, scores = hrnn.load(model_path).recommend_batch([3, "nobody", "007"], 3)
        inputs = [{"userId": "3", "itemId": "x"}, {"userId": "nobody"}, {"userId": "007"}]
        for row, given, its, sc in zip(rows, inputs, items, scores):
            assert set(row) == {"input", "output", "error"} and row["error"] is None
            assert row["input"] == given  # the input line as written, as Personalize echoes it
            assert row["output"]["recommendedItems"] == [str(i) for i in its]
            assert np.allclose(row["output"]["scores"], sc, rtol=1e-6)
        assert main(["recommend", str(model_path), "--user", "3", "-n", "2", "--format", "personalize"]) == 0
        assert json.loads(capsys.readouterr().out)["input"] == {"userId": "3"}

    def test_a_json_array_line_is_refused(self, trained, tmp_path, capsys):
        _, model_path, _ = trained
        users = tmp_path / "users.txt"
        users.write_text('3\n[{"userId": "7"}]\n')
        assert main(["recommend", str(model_path), "--users", str(users)]) == 2
        assert "line 2: a JSON array" in one_error_line(capsys.readouterr().err)

    def test_matches_single_recommend_and_stdin(self, trained, capsys, monkeypatch):
        csv, model_path, _ = trained
        monkeypatch.setattr("sys.stdin", io.StringIO("1\n2\n"))
        assert main(["recommend", str(model_path), "--users", "-", "-n", "4",
                     "--exclude-interacted", "--num-threads", "2"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        model = hrnn.load(model_path)
        for row in rows:
            items, _ = model.recommend(row["userId"], 4, exclude_interacted=True)
            assert row["recommendedItems"] == items.tolist()
            assert not set(items.tolist()) & history_items(csv, row["userId"])

    def test_a_failed_call_leaves_the_output_file(self, trained, tmp_path, capsys):
        """The output is written only once every recommendation is computed."""
        _, model_path, _ = trained
        keep = tmp_path / "keep.jsonl"
        keep.write_text("PRECIOUS\n")
        (tmp_path / "bad.txt").write_text('1\n{"not": "an id"\n')
        for users in (str(tmp_path / "missing.txt"), str(tmp_path / "bad.txt")):
            assert main(["recommend", str(model_path), "--users", users, "-o", str(keep)]) == 2
            assert keep.read_text() == "PRECIOUS\n"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hrnn-")] == []

    def test_json_values_keep_their_type_and_spaces(self, tmp_path, capsys, monkeypatch):
        """Users 5, "5" and " 7" are three users: a JSON line names one exactly; a plain line
        is trimmed text (the user "5" here). A byte-order mark is not part of the first id."""
        ids = [5, "5", " 7", "user 3"]
        log = make_log(n_events=400, n_users=4, n_items=30, seed=2).drop_duplicates()
        log["USER_ID"] = log["USER_ID"].map(dict(enumerate(ids)))
        path = tmp_path / "mixed.hrnn"
        with pytest.warns(UserWarning, match=r"USER_ID holds 1 ids both as integers and as text \(e.g. 5 and '5'\)"):
            hrnn.HRNN(hidden_dimension=32, epochs=1, num_threads=1, show_progress=False).fit(
                log, check_minimums=False).save(path)
        users = tmp_path / "users.txt"
        users.write_bytes("\ufeff5\n".encode("utf-8") + b'{"userId": 5}\n{"userId": "5"}\n{"userId": " 7"}\n'
                          b'{"userId": "user  3"}\n')
        calls = []
        real = hrnn.HRNN.recommend_batch
        monkeypatch.setattr(hrnn.HRNN, "recommend_batch", lambda self, *a, **k: calls.append(a[0]) or real(self, *a, **k))
        assert main(["recommend", str(path), "--users", str(users), "-n", "3"]) == 0
        assert calls == [["5", 5, "5", " 7", "user  3"]]
        assert "warning: user 'user  3' is not in the model" in capsys.readouterr().err

    def test_a_reader_that_stops_is_not_an_error(self, trained, tmp_path):
        import subprocess
        import sys
        _, model_path, _ = trained
        (tmp_path / "u.txt").write_text("3\n" * 5000)  # far more than a pipe holds
        proc = subprocess.Popen([sys.executable, "-m", "hrnn", "recommend", str(model_path), "--users",
                                 str(tmp_path / "u.txt"), "-n", "25"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.stdout.close()  # as `| head -1` does
        with proc.stderr:
            err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141 and err == ""

    def test_short_rows_are_trimmed(self, tmp_path, capsys):
        # A catalogue smaller than -n after excluding the history: no None / -Infinity in JSON.
        users, items, ts = (np.repeat(np.arange(30), 40), np.tile(np.arange(40), 30),
                            1.6e9 + np.arange(1200) * 60.0)
        csv, model = tmp_path / "small.csv", tmp_path / "small.hrnn"
        pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts}).to_csv(csv,
                                                                                  index=False)
        assert main(["train", str(csv), "-o", str(model)] + FAST) == 0
        capsys.readouterr()
        (tmp_path / "u.txt").write_text("0\n1\n")
        assert main(["recommend", str(model), "--users", str(tmp_path / "u.txt"), "-n", "50",
                     "--exclude-interacted"]) == 0
        out = capsys.readouterr().out
        assert "Infinity" not in out and "null" not in out and "NaN" not in out
        assert [json.loads(line)["recommendedItems"] for line in out.splitlines()] == [[], []]


# ------------------------------------------------------------------------------- help, errors

class TestHelp:
    @pytest.mark.parametrize("command", ["inspect", "train", "recommend"])
    def test_each_command_has_help_with_an_example(self, command, capsys):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: hrnn {command}")
        examples = out.split("examples:", 1)[1]
        assert f"  hrnn {command} " in examples

    def test_top_level_help_lists_commands(self, capsys):
        assert main(["--help"]) == 0
        out = capsys.readouterr().out
        for needle in ("inspect", "train", "recommend", "examples:", "hrnn COMMAND --help"):
            assert needle in out


class TestErrors:
    def test_missing_data_file(self, tmp_path, capsys):
        assert main(["train", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "m")]) == 2
        assert one_error_line(capsys.readouterr().err).startswith("error: no such file")

    def test_missing_model_file(self, tmp_path, capsys):
        assert main(["recommend", str(tmp_path / "nope.hrnn"), "--user", "1"]) == 2
        assert one_error_line(capsys.readouterr().err).startswith("error: no such file")

    def test_not_a_model_file(self, trained, capsys):
        assert main(["recommend", str(trained[0]), "--user", "1"]) == 2
        assert "not an hrnn model file" in one_error_line(capsys.readouterr().err)

    def test_out_of_range_hyperparameter_names_the_flag(self, trained, tmp_path, capsys):
        model = tmp_path / "m.hrnn"
        assert main(["train", str(trained[0]), "-o", str(model), "--hidden-dimension", "8"]) == 2
        err = one_error_line(capsys.readouterr().err)
        assert err.startswith("error: --hidden-dimension: hidden_dimension must be in [32, 256]")
        assert not model.exists()

    def test_output_folder_missing(self, trained, tmp_path, capsys):
        assert main(["train", str(trained[0]), "-o", str(tmp_path / "no" / "m.hrnn")]) == 2
        assert "no such folder" in one_error_line(capsys.readouterr().err)
        # recommend: named as the output path (not a temporary file), before the model is loaded
        for users in (["--user", "u1"], ["--users", str(tmp_path / "not-read.txt")]):
            assert main(["recommend", str(trained[1]), *users, "-o", str(tmp_path / "no" / "r.jsonl")]) == 2
            err = one_error_line(capsys.readouterr().err)
            assert f"cannot write {tmp_path / 'no' / 'r.jsonl'}: no such folder" in err

    def test_below_personalize_minimums(self, tmp_path, capsys):
        csv = tmp_path / "tiny.csv"
        pd.DataFrame({"USER_ID": [1, 1, 2, 2], "ITEM_ID": [1, 2, 1, 3],
                      "TIMESTAMP": 1.6e9 + np.arange(4)}).to_csv(csv, index=False)
        assert main(["train", str(csv), "-o", str(tmp_path / "m.hrnn")] + FAST) == 2
        assert "1,000" in one_error_line(capsys.readouterr().err)
        assert main(["train", str(csv), "-o", str(tmp_path / "m.hrnn"), "--no-minimums"] + FAST) == 0
        assert len(hrnn.load(tmp_path / "m.hrnn").item_ids_) == 3

    @pytest.mark.parametrize("content, message", [
        ('{"user": 1}\n', 'line 1: a JSON line needs a "userId" field'),
        ('3\n{"userId": 1\n', "line 2: not valid JSON"),
        ('{"userId": null}\n', "line 1: a user id must be a string or a number"),
        ("\n\n", "holds no user ids")])
    def test_bad_users_file(self, trained, tmp_path, capsys, content, message):
        path = tmp_path / "users.txt"
        path.write_text(content)
        assert main(["recommend", str(trained[1]), "--users", str(path)]) == 2
        assert message in one_error_line(capsys.readouterr().err)

    def test_bad_thread_count(self, trained, capsys):
        assert main(["recommend", str(trained[1]), "--user", "1", "--num-threads", "-1"]) == 2
        assert one_error_line(capsys.readouterr().err).startswith("error: --num-threads:")

    @pytest.mark.parametrize("argv", [
        ["train", "d.csv"],                                       # no -o
        ["train", "d.csv", "-o", "m", "--epochs", "two"],
        ["train", "d.csv", "-o", "m", "--optimizer", "sgd"],
        ["train", "d.csv", "-o", "m", "--max-pct", "1.5"],
        ["train", "d.csv", "-o", "m", "--transition-weight", "heavy"],
        ["train", "d.csv", "-o", "m", "--session-start-sources", "yes"],
        ["recommend", "m.hrnn"],                                  # neither --user nor --users
        ["recommend", "m.hrnn", "--user", "1", "--users", "u.txt"],
        ["recommend", "m.hrnn", "--user", "1", "-n", "0"],
        ["recommend", "m.hrnn", "--user", "1", "-n", "501"]])
    def test_usage_errors(self, argv, capsys):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "usage: hrnn" in err and "error:" in err


def test_python_dash_m_hrnn_is_the_command():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "hrnn", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and hrnn.__version__ in out.stdout + out.stderr


def test_ctrl_c_exits_130(trained, tmp_path, monkeypatch, capsys):
    """An interrupted `hrnn train` saves the model as trained so far but says so by its exit
    status; another command stopped by Ctrl-C prints one line, no traceback."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hrnn._training, "_epochs", interrupted)  # Ctrl-C in the first epoch
    model = tmp_path / "m.hrnn"
    assert main(["train", str(trained[0]), "-o", str(model)] + FAST) == 130
    assert model.exists() and "training interrupted by the user" in capsys.readouterr().err
    assert main(["evaluate", str(model), str(trained[0])]) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "interrupted" and err[-2].startswith("warning: training interrupted by the user")


def test_a_text_user_id_with_spaces_around_it_is_found_as_given():
    """A model's text id " spaced " (kept from the file) is found from --user and plain --users lines,
    which are otherwise trimmed ("7 " -> 7 on an integer model)."""
    class Model:
        known_user_ids = np.array([" spaced ", "u1", 7], dtype=object)

    to_id = cli._UserIds(Model())
    assert to_id(" spaced ") == " spaced " and to_id(" u1 ") == "u1" and to_id("7") == 7
    assert to_id(7, typed=True) == 7 and to_id(" spaced ", typed=True) == " spaced "
