"""Model files: round trip, atomic writes, and clear errors for damaged or foreign files."""
from __future__ import annotations

import json
import os
import re
import stat
import struct
import tempfile

import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn import model_file
from hrnn.synthetic import make_log
from conftest import planted_log

FAST = dict(hidden_dimension=32, n_sample=32, batch_size=16, bptt=8, show_progress=False, epochs=2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    users, items, ts = planted_log(n_users=60)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    m.put_events("late user", [3, 4, "unknown item"], [10.0, 20.0, 30.0])
    path = tmp_path_factory.mktemp("m") / "model.hrnn"
    m.save(path)
    return m, path


def test_round_trip(saved):
    m, path = saved
    m2 = hrnn.load(path)
    for name, value in m.get_weights().items():
        np.testing.assert_array_equal(value, m2.get_weights()[name])
    assert m2.get_params() == m.get_params() and m2.transition_weight_ == m.transition_weight_ > 0
    for user in (0, 17, "late user", "never seen"):
        a, b = m.recommend(user, 10, exclude_interacted=True), m2.recommend(user, 10, exclude_interacted=True)
        assert list(a[0]) == list(b[0]) and np.array_equal(a[1], b[1])
    assert m2.unknown_item_events_["unknown item"] == 1
    # the loaded model keeps taking events
    m2.put_events(17, [5], [2e9])
    assert np.isfinite(m2.recommend(17, 3)[1]).all()


def test_id_maps_are_read_only_and_queries_ready(tmp_path):
    """known_user_ids() of a model without put_events users was the model's own array: a write into
    it gave user 0's state to another id in the next model file."""
    users, items, ts = planted_log(n_users=40)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    for arr in (m.known_user_ids, m.user_ids_, m.item_ids_, m.popularity_):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 10**9
    m.save(tmp_path / "m.hrnn")
    loaded = hrnn.load(tmp_path / "m.hrnn")
    assert loaded.known_user_ids.tolist() == m.known_user_ids.tolist()
    # Both come ready to answer: the scoring table is built in fit and load, not in a first query.
    assert m._engine.queries_prepared() and loaded._engine.queries_prepared()
    with pytest.raises(ValueError, match="read-only"):
        loaded.known_user_ids[0] = 10**9


def test_event_filters_and_device_round_trip(tmp_path):
    """The event filters are hyperparameters of the file too; load(device=) overrides the saved device."""
    users, items, ts = planted_log(n_users=60)
    table = pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts,
                          "EVENT_TYPE": np.where(np.arange(users.size) % 7, "click", "view"),
                          "EVENT_VALUE": np.arange(users.size) % 5})
    m = hrnn.HRNN(random_state=0, event_type="click", event_value_threshold=1.0, **FAST).fit(table)
    m.save(tmp_path / "f.hrnn")
    params = hrnn.load(tmp_path / "f.hrnn").get_params()
    assert (params["event_type"], params["event_value_threshold"]) == ("click", 1.0) and params == m.get_params()
    if hrnn._device.cuda_unavailable_reason() is None:
        assert hrnn.load(tmp_path / "f.hrnn", device="cuda").device == "cuda"
    else:
        with pytest.raises(ValueError, match="device='cuda' is not available"):
            hrnn.load(tmp_path / "f.hrnn", device="cuda")


def test_string_ids_round_trip(tmp_path):
    users, items, ts = planted_log(n_users=40)
    m = hrnn.HRNN(random_state=0, **FAST).fit(([f"ü{u}" for u in users], [f"é{i}" for i in items], ts))
    m.save(tmp_path / "s.hrnn")
    m2 = hrnn.load(tmp_path / "s.hrnn")
    assert list(m2.recommend("ü3", 5)[0]) == list(m.recommend("ü3", 5)[0])


def test_no_temporary_files_left_and_old_file_kept_on_failure(saved, tmp_path, monkeypatch):
    m, path = saved
    target = tmp_path / "model.hrnn"
    m.save(target)
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_file.os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        m.save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.hrnn"]


def test_read_only_target_keeps_old_file(saved, tmp_path, monkeypatch):
    """A folder we may not write to (simulated: tests often run as root, who may write anywhere)."""
    m, _ = saved
    target = tmp_path / "model.hrnn"
    m.save(target)
    before = target.read_bytes()

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError):
        m.save(target)
    assert target.read_bytes() == before


def test_training_records_are_kept(tmp_path):
    log = make_log(3000, n_users=60, n_items=200, seed=1)  # (users with several sessions: validation)
    m = hrnn.HRNN(random_state=0, num_threads=1, **{**FAST, "epochs": 3}).fit(
        log, validation=True, early_stopping_rounds=1)
    m.save(tmp_path / "m.hrnn")
    back = hrnn.load(tmp_path / "m.hrnn")
    assert back.history_ == m.history_ and len(back.history_) >= 2
    assert back.transition_weight_scores_ == m.transition_weight_scores_ and back.transition_weight_scores_
    assert back.best_epoch_ == m.best_epoch_
    # A refit without early stopping records no best epoch (not the previous fit's).
    m.fit(log)
    assert not hasattr(m, "best_epoch_")


def test_save_where_no_file_can_be_written_names_the_path(saved, tmp_path):
    m, _ = saved
    missing = tmp_path / "no folder" / "model.hrnn"
    with pytest.raises(FileNotFoundError, match=f"cannot write {re.escape(str(missing))}: no such folder"):
        m.save(missing)
    with pytest.raises(IsADirectoryError, match=f"cannot write {re.escape(str(tmp_path))}: it is a folder"):
        m.save(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cut", [0, 7, 8, 16, 100, 1000, -13, -1])
def test_truncated(saved, tmp_path, cut):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "bad.hrnn"
    bad.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(ValueError, match="not an hrnn model file" if cut in (0, 7) else "truncated"):
        hrnn.load(bad)


def test_bytes_appended_after_the_end(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "bad.hrnn"
    bad.write_bytes(path.read_bytes() + b"\n\n\n")
    with pytest.raises(ValueError, match="damaged: 3 bytes after its end marker"):
        hrnn.load(bad)


def test_flipped_bytes(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(data), 25):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        (tmp_path / "bad.hrnn").write_bytes(bytes(bad))
        with pytest.raises(ValueError):
            hrnn.load(tmp_path / "bad.hrnn")


def test_huge_sizes_in_a_header_with_a_valid_checksum(saved, tmp_path):
    """A crafted file whose checksum is right but whose section claims 2**60 bytes."""
    import zlib
    _, path = saved
    data = bytearray(path.read_bytes())
    off = model_file._HEAD.size + 48 + 2 + 6  # first section: its shape[0]
    struct.pack_into("<Q", data, off, 2**60)
    body = bytes(data[:-model_file._TRAILER.size])
    data[-model_file._TRAILER.size:] = model_file._TRAILER.pack(zlib.crc32(body), model_file.END)
    (tmp_path / "huge.hrnn").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sizes"):
        hrnn.load(tmp_path / "huge.hrnn")


def test_foreign_file_and_other_version(saved, tmp_path):
    _, path = saved
    (tmp_path / "x.hrnn").write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 3)
    with pytest.raises(ValueError, match="not an hrnn model file"):
        hrnn.load(tmp_path / "x.hrnn")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, 0)
    (tmp_path / "old.hrnn").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="format version 0"):
        hrnn.load(tmp_path / "old.hrnn")


def test_damage_behind_a_valid_checksum_names_the_file(saved, tmp_path):
    """Sections rewritten with a correct checksum: a missing section, metadata that is not JSON,
    a non-integer size, a session-start mix out of range. Each error names the file (not the last parameter read, nor json's bare
    message)."""
    _, path = saved
    sections = {k: np.array(v) for k, v in model_file.read_sections(path).items()}
    meta = json.loads(sections["meta"].tobytes().decode("utf-8"))
    cases = {
        "missing section 'transitions.out'": {k: v for k, v in sections.items() if k != "transitions.out"},
        "metadata is not valid JSON": {**sections, "meta": np.frombuffer(b"{not json", np.uint8)},
        "is corrupted: invalid literal": {**sections, "meta": np.frombuffer(
            json.dumps({**meta, "hidden": "x"}).encode(), np.uint8)},
        "bad session-start setting \\[1.5, False\\]": {**sections, "meta": np.frombuffer(
            json.dumps({**meta, "session_start": [1.5, False]}).encode(), np.uint8)},
        "bad session-start setting \\[0.5, 1\\]": {**sections, "meta": np.frombuffer(
            json.dumps({**meta, "session_start": [0.5, 1]}).encode(), np.uint8)},
    }
    for i, (message, content) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.hrnn"
        model_file._write_atomic(bad, content)
        with pytest.raises(ValueError, match=f"^{str(bad)}.*{message}"):
            hrnn.load(bad)


def test_numpy_scalar_hyperparameters_are_saved_as_python_values(tmp_path):
    """numpy scalars (a config read with numpy) are valid hyperparameters, and the model file
    (JSON metadata) takes them."""
    users, items, ts = planted_log(n_users=60)
    params = dict(FAST, hidden_dimension=np.int64(32), learning_rate=np.float32(0.1),
                  recency_mask=np.True_, random_state=np.int64(3), session_gap=np.int64(1800))
    m = hrnn.HRNN(num_threads=1, **params)
    assert type(m.hidden_dimension) is int and type(m.recency_mask) is bool
    m.fit((users, items, ts)).save(tmp_path / "np.hrnn")
    back = hrnn.load(tmp_path / "np.hrnn").get_params()
    assert back["learning_rate"] == float(np.float32(0.1)) and back["recency_mask"] is True
    assert back["random_state"] == 3 and type(back["session_gap"]) is int


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        hrnn.load("/nonexistent/model.hrnn")


def test_no_pickle_in_the_file(saved):
    _, path = saved
    assert b"\x80\x04\x95" not in path.read_bytes()[:64]


def test_a_saved_file_gets_the_permissions_of_any_new_file(saved, tmp_path):
    """Not mkstemp's 0o600: a serving process running as another user must be able to read it.
    A file that is replaced keeps its own permissions."""
    m, _ = saved
    previous = os.umask(0o022)
    try:
        m.save(tmp_path / "new.hrnn")
        assert stat.S_IMODE(os.stat(tmp_path / "new.hrnn").st_mode) == 0o644
        os.umask(0o077)
        m.save(tmp_path / "private.hrnn")
        assert stat.S_IMODE(os.stat(tmp_path / "private.hrnn").st_mode) == 0o600
        os.chmod(tmp_path / "new.hrnn", 0o640)
        m.save(tmp_path / "new.hrnn")
        assert stat.S_IMODE(os.stat(tmp_path / "new.hrnn").st_mode) == 0o640
    finally:
        os.umask(previous)


def test_fitted_models_are_not_pickled_unfitted_ones_are(saved):
    import copy
    import pickle
    model = hrnn.load(saved[1])
    for copier in (pickle.dumps, copy.deepcopy, copy.copy):
        with pytest.raises(TypeError, match="a fitted HRNN cannot be pickled or copied.*hrnn.load.*clone"):
            copier(model)
    clone = pickle.loads(pickle.dumps(model.clone()))
    assert clone.get_params() == model.get_params() and clone._engine is None
    fitted = hrnn.baselines.RepeatRule().fit((np.repeat([1, 2], 5), np.arange(10) % 4, np.arange(10.0)))
    with pytest.raises(TypeError, match="a fitted RepeatRule cannot be pickled"):
        pickle.dumps(fitted)


def test_text_session_ids_of_files_from_before_the_integer_rule_still_continue(tmp_path, monkeypatch):
    """Session ids "1799" hash as 1799 now (Personalize sends them as text); a file written
    before that keeps its users' last sessions hashed as text, and its put_events too."""
    users, items, ts = planted_log(n_users=40)
    log = pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts,
                        "SESSION_ID": [str(1000 + u) for u in users]})
    user, t = int(users[0]), float(ts[users == users[0]].max()) + 10

    def continued(path, session):
        """Whether a put_events with ``session`` continues the user's training session."""
        a, b = hrnn.load(path), hrnn.load(path)
        a.put_events(user, [3], [t], session_id=session)
        b.put_events(user, [3], [t])  # within the gap: the training session goes on
        return np.array_equal(a.user_state(user)[0], b.user_state(user)[0])

    fast = dict(FAST, epochs=1, random_state=0, num_threads=1)
    hrnn.HRNN(**fast).fit(log).save(tmp_path / "new.hrnn")
    assert continued(tmp_path / "new.hrnn", "1000") and continued(tmp_path / "new.hrnn", 1000)
    # The file as the previous version wrote it: text hashed as text, no flag in the metadata.
    with monkeypatch.context() as mp:
        mp.setattr(hrnn.data, "_stable_hash", lambda v: hrnn._ids._stable_hash(v, digits_as_int=False))
        hrnn.HRNN(**fast).fit(log).save(tmp_path / "old.hrnn")
    sections = {k: np.array(v) for k, v in model_file.read_sections(tmp_path / "old.hrnn").items()}
    meta = json.loads(sections["meta"].tobytes().decode("utf-8"))
    del meta["session_digits_as_int"]
    sections["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model_file._write_atomic(tmp_path / "old.hrnn", sections)
    assert continued(tmp_path / "old.hrnn", "1000") and not continued(tmp_path / "old.hrnn", 1000)
    old = hrnn.load(tmp_path / "old.hrnn")
    old.save(tmp_path / "again.hrnn")  # and it stays so when saved again
    assert continued(tmp_path / "again.hrnn", "1000")
