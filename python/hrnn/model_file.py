"""The model file: one file, data only (no pickle), versioned, checksummed, written atomically.

Layout (little-endian)::

    b"HRNNMODL"  u32 format version  u32 number of sections
    per section: name (48 bytes, ASCII, NUL-padded)  dtype code (u8)  ndim (u8)  6 pad bytes
                 shape (4 x u64)  byte length (u64)  then the data
    trailer: crc32 of everything before it (u32)  b"HRNNEND\\0"

Everything is checked before it is used: the checksum over the whole file first, then every
section's dtype, shape and length against the bytes that remain, so a truncated, corrupted or
foreign file raises ValueError and never allocates more than the file's own size.
"""
from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from collections import Counter

import numpy as np

from . import _core, _device
from ._files import atomic_file
from .data import last_flags

MAGIC = b"HRNNMODL"
END = b"HRNNEND\0"
VERSION = 2  # 2: the transition prior's table
_HEAD = struct.Struct("<8sII")
_SECTION = struct.Struct("<48sBB6x4QQ")
_TRAILER = struct.Struct("<I8s")
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.int64, 5: np.uint8}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def _encode_ids(ids: np.ndarray, name: str) -> dict:
    """Ids as arrays: integers as int64, strings as UTF-8 bytes plus offsets."""
    values = ids.tolist()
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and -2**63 <= v < 2**63 for v in values):
        return {f"{name}.int": np.asarray(values, dtype=np.int64)}
    if all(isinstance(v, str) for v in values):
        raw = [v.encode("utf-8") for v in values]
        offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in raw], out=offsets[1:])
        return {f"{name}.utf8": np.frombuffer(b"".join(raw), dtype=np.uint8),
                f"{name}.offsets": offsets}
    if all(isinstance(v, (str, int, np.integer)) and not isinstance(v, bool) for v in values):
        # mixed, or integers beyond int64: each id as text with its type
        tagged = [("s:" + v) if isinstance(v, str) else f"i:{int(v)}" for v in values]
        return {f"{k[:-5]}.tagged{k[-5:]}" if k.endswith(".utf8") else f"{name}.tagged.offsets": v
                for k, v in _encode_ids(np.array(tagged, dtype=object), name).items()}
    kinds = sorted({type(v).__name__ for v in values})
    raise TypeError(f"{name} must be integers or strings to be saved, found {kinds}")


def _decode_ids(sections: dict, name: str) -> np.ndarray:
    if f"{name}.int" in sections:
        return sections[f"{name}.int"].copy()
    if f"{name}.tagged.utf8" in sections:
        tagged = _decode_ids({f"{name}.utf8": sections[f"{name}.tagged.utf8"],
                              f"{name}.offsets": sections[f"{name}.tagged.offsets"]}, name)
        out = np.empty(len(tagged), dtype=object)
        out[:] = [t[2:] if t[:2] == "s:" else int(t[2:]) for t in tagged]
        return out
    blob = sections[f"{name}.utf8"].tobytes()
    off = sections[f"{name}.offsets"]
    if len(off) == 0 or off[0] != 0 or off[-1] != len(blob) or (np.diff(off) < 0).any():
        raise ValueError(f"corrupt model file: bad {name} offsets")
    out = np.empty(len(off) - 1, dtype=object)
    out[:] = [blob[a:b].decode("utf-8") for a, b in zip(off[:-1].tolist(), off[1:].tolist())]
    return out


def save(model, path) -> None:
    """Write ``model`` to ``path``: a temporary file in the same folder, then an atomic rename."""
    engine = model._engine
    with model._lock:  # one consistent snapshot: no user is created meanwhile
        users = engine.dump_users()
        user_ids = model.known_user_ids
        unknown = [[k, v] for k, v in model._unknown_items.items() if isinstance(k, (int, str))]
    meta = {"params": model.get_params(), "hidden": engine.hidden, "tied": engine.tied,
            "n_items": engine.n_items, "hrnn_version": _version(), "unknown_item_events": unknown,
            "training": _training_record(model), "session_digits_as_int": model._session_digits,
            "session_start": [engine.session_start_mix, engine.session_start_sources],
            "user_session_starts": True}  # users.session_start is there (files from before: not)
    index, k, sample_size, beta = engine.get_neighbors()
    if beta > 0:
        meta["session_start_neighbors"] = [beta, k, sample_size]
    sections = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    if beta > 0:
        sections.update({f"neighbors.{key}": value for key, value in index.items()})
    for name in engine.param_names():
        sections[f"param.{name}"] = engine.get_param(name)
    for key, value in users.items():
        sections[f"users.{key}"] = value
    sections["popularity"] = np.asarray(model.popularity_, dtype=np.float64)
    transitions = engine.get_transitions()
    transitions["weight"] = np.array([transitions["weight"]] if len(transitions["out"]) else [], np.float32)
    for key in _TRANSITION_DTYPES:
        sections[f"transitions.{key}"] = transitions[key]
    sections.update(_encode_ids(user_ids, "user_ids"))
    sections.update(_encode_ids(model.item_ids_, "item_ids"))
    _write_atomic(os.fspath(path), sections)


def _training_record(model) -> dict:
    """What fit recorded (``history_``, ``transition_weight_scores_``, ``best_epoch_``), as JSON."""
    record = {}
    if hasattr(model, "history_"):
        record["history"] = [{k: v.item() if isinstance(v, np.generic) else v for k, v in epoch.items()}
                             for epoch in model.history_]
    if hasattr(model, "transition_weight_scores_"):
        record["transition_weight_scores"] = [[float(w), float(v)] for w, v in model.transition_weight_scores_.items()]
    if hasattr(model, "session_start_scores_"):
        record["session_start_scores"] = [[float(m), bool(s), float(v)]
                                          for (m, s), v in model.session_start_scores_.items()]
    if hasattr(model, "session_start_neighbors_scores_"):
        record["session_start_neighbors_scores"] = [[float(b), float(v)]
                                                    for b, v in model.session_start_neighbors_scores_.items()]
    if hasattr(model, "best_epoch_"):
        record["best_epoch"] = int(model.best_epoch_)
    return record


def _restore_training(model, record, name: str) -> None:
    """``_training_record``'s attributes back on ``model`` (a file without them: none set)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def pairs(s):
        return isinstance(s, list) and all(isinstance(p, list) and len(p) == 2 and all(map(number, p)) for p in s)

    checks = {"history": lambda h: isinstance(h, list) and all(isinstance(e, dict) for e in h),
              "transition_weight_scores": pairs, "session_start_neighbors_scores": pairs,
              "session_start_scores": lambda s: isinstance(s, list) and all(
                  isinstance(p, list) and len(p) == 3 and number(p[0]) and isinstance(p[1], bool) and number(p[2])
                  for p in s),
              "best_epoch": lambda b: number(b) and isinstance(b, int)}
    if not isinstance(record, dict) or not all(record.get(k) is None or ok(record[k]) for k, ok in checks.items()):
        raise ValueError(f"{name} is corrupted: its training record is malformed")
    if record.get("history") is not None:
        model.history_ = record["history"]
    if record.get("transition_weight_scores") is not None:
        model.transition_weight_scores_ = {w: v for w, v in record["transition_weight_scores"]}
    if record.get("session_start_scores") is not None:
        model.session_start_scores_ = {(m, s): v for m, s, v in record["session_start_scores"]}
    if record.get("session_start_neighbors_scores") is not None:
        model.session_start_neighbors_scores_ = {b: v for b, v in record["session_start_neighbors_scores"]}
    if record.get("best_epoch") is not None:
        model.best_epoch_ = record["best_epoch"]


def _version() -> str:
    from . import __version__
    return __version__


def _write_atomic(path: str, sections: dict) -> None:
    with atomic_file(path) as f:
        crc = 0

        def put(b):
            nonlocal crc
            f.write(b)
            crc = zlib.crc32(b, crc)

        put(_HEAD.pack(MAGIC, VERSION, len(sections)))
        for name, arr in sections.items():
            arr = np.ascontiguousarray(arr)
            shape = list(arr.shape) + [0] * (4 - arr.ndim)
            put(_SECTION.pack(name.encode("ascii"), _CODES[arr.dtype], arr.ndim, *shape, arr.nbytes))
            put(memoryview(arr).cast("B"))
        f.write(_TRAILER.pack(crc & 0xFFFFFFFF, END))


def read_sections(path) -> dict:
    """Validate a model file and return its sections as read-only arrays over one buffer."""
    with open(path, "rb") as f:
        buf = f.read()
    name = os.fspath(path)
    if buf[:8] != MAGIC:
        raise ValueError(f"{name} is not an hrnn model file (no HRNNMODL header)")
    if len(buf) < _HEAD.size + _TRAILER.size:
        raise ValueError(f"{name} is truncated ({len(buf)} bytes)")
    _, version, count = _HEAD.unpack_from(buf, 0)
    if version != VERSION:
        raise ValueError(f"{name} was written in model format version {version}; this hrnn "
                         f"({_version()}) reads version {VERSION}: retrain, or load it with the "
                         "hrnn release that wrote it")
    crc, end = _TRAILER.unpack_from(buf, len(buf) - _TRAILER.size)
    if end != END:
        marker = buf.rfind(END)  # (an end marker earlier on: bytes were appended after it)
        raise ValueError(f"{name} is truncated (no end marker)" if marker < _HEAD.size else
                         f"{name} is damaged: {len(buf) - marker - len(END)} bytes after its end marker")
    body = memoryview(buf)[: len(buf) - _TRAILER.size]
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise ValueError(f"{name} is corrupted (checksum mismatch)")
    sections, pos = {}, _HEAD.size
    for _ in range(count):
        if pos + _SECTION.size > len(body):
            raise ValueError(f"{name} is corrupted: section table runs past the end")
        raw, code, ndim, *rest = _SECTION.unpack_from(body, pos)
        shape, nbytes = rest[:4], rest[4]
        pos += _SECTION.size
        dtype = _DTYPES.get(code)
        if dtype is None or ndim > 4 or any(s for s in shape[ndim:]):
            raise ValueError(f"{name} is corrupted: bad section header at byte {pos}")
        shape = tuple(shape[:ndim])
        if nbytes > len(body) - pos or int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize != nbytes:
            raise ValueError(f"{name} is corrupted: section sizes do not match the file")
        key = raw.rstrip(b"\0").decode("ascii", errors="replace")
        sections[key] = np.frombuffer(body, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize,
                                      offset=pos).reshape(shape)
        pos += nbytes
    if pos != len(body):
        raise ValueError(f"{name} is corrupted: {len(body) - pos} unexpected trailing bytes")
    return sections


_USER_DTYPES = {"U": np.float32, "Hs": np.float32, "last_ts": np.float64, "history_ts": np.float64,
                "history_items": np.int32}
# The transition prior: its weight (one value) and table, all empty when the model has none.
_TRANSITION_DTYPES = {"weight": np.float32, "offsets": np.int64, "successors": np.int32, "counts": np.float32,
                      "out": np.float32, "repeat_curve": np.float32}


def _expected_dtype(key: str):
    """The dtype save() writes for a section (anything else is a damaged or foreign file)."""
    if key.startswith("param."):
        return np.float32
    if key.startswith("users."):
        return _USER_DTYPES.get(key[len("users."):], np.int64)
    if key == "neighbors.session_items":
        return np.int32
    if key.startswith("transitions."):
        return _TRANSITION_DTYPES.get(key[len("transitions."):], np.int64)
    if key == "popularity":
        return np.float64
    if key == "meta" or key.endswith(".utf8"):
        return np.uint8
    return np.int64  # ids as int64, and offsets


_NEIGHBOR_SECTIONS = ("session_offsets", "session_items", "item_offsets", "item_sessions", "recency", "own_session",
                      "fit_events")


def _gap_session_starts(offsets: np.ndarray, ts: np.ndarray, session_gap: float) -> np.ndarray:
    """int64 [n_users]: where each user's last session starts in its history (``offsets`` /
    ``ts``), sessions cut by gaps beyond ``session_gap`` alone; -1 for a user without events (and
    for every user of offsets that are no CSR of ``ts``: the user store names that fault)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if not len(offsets) or offsets[0] != 0 or offsets[-1] != len(ts) or np.any(lengths < 0):
        return np.full(max(len(offsets) - 1, 0), -1, dtype=np.int64)
    new = np.ones(len(ts), dtype=bool)
    new[1:] = np.diff(ts) > session_gap
    new[offsets[:-1][lengths > 0]] = True
    return np.where(lengths > 0, last_flags(new, offsets) - offsets[:-1], -1).astype(np.int64)


def _load_neighbors(engine, s: dict, setting, name: str) -> float:
    """The neighbours' share a file's session-start answers use (files without: 0), its index
    given to ``engine``."""
    if setting is None:
        return 0.0
    if not (isinstance(setting, list) and len(setting) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in setting)
            and 0.0 < setting[0] < 1.0 and all(isinstance(x, int) and 0 < x < 2**31 for x in setting[1:])):
        raise ValueError(f"{name} is corrupted: bad session-start neighbours setting {setting!r}")
    index = {key: s[f"neighbors.{key}"] for key in _NEIGHBOR_SECTIONS}
    try:
        engine.set_neighbors(index, setting[1], setting[2], float(setting[0]))
    except ValueError as e:
        raise ValueError(f"{name} is corrupted: {e}") from None
    return float(setting[0])


def load(path, device=None):
    """Read a model written by :meth:`HRNN.save`.

    Parameters
    ----------
    path : str or PathLike
        The model file. A truncated, corrupted, foreign or other-version file is a ValueError
        naming it (nothing is allocated beyond what the file holds).
    device : {"cpu", "cuda"}, optional
        Where to train and score; None keeps the device the model was saved with, or the CPU
        (with a RuntimeWarning) when that was "cuda" and CUDA is not available here.

    Returns
    -------
    HRNN
        Fitted, with every user's state: ready for ``recommend`` and ``put_events``.
    """
    from .model import HRNN

    s = read_sections(path)
    name = os.fspath(path)
    try:
        meta = json.loads(s["meta"].tobytes().decode("utf-8"))
        params = meta["params"]
        if isinstance(params, dict):
            params = dict(params, **({"device": device} if device is not None else {}))
            if device is None and params.get("device") == "cuda" and _device.cuda_unavailable_reason():
                warnings.warn(f"{name} was saved with device='cuda', which is not available here "
                              f"({_device.cuda_unavailable_reason()}); it is loaded on the CPU",
                              RuntimeWarning, stacklevel=2)
                params["device"] = "cpu"
        try:
            model = HRNN(**params)
        except TypeError as e:
            raise ValueError(f"{name} holds hyperparameters this hrnn does not know: {e}") from None
        try:
            n_items, hidden, tied = int(meta["n_items"]), int(meta["hidden"]), bool(meta["tied"])
        except ValueError as e:
            raise ValueError(f"{name} is corrupted: {e}") from None
        # The sizes the metadata claims must be those of the stored arrays, before anything is allocated.
        if s["param.E"].shape != (n_items, hidden) or s["popularity"].shape != (n_items,):
            raise ValueError(f"{name} is corrupted: its metadata does not match its parameters")
        for key, arr in s.items():
            if arr.dtype != _expected_dtype(key):
                raise ValueError(f"{name} is corrupted: section {key} has dtype {arr.dtype}")
        engine = _core.Engine(n_items, hidden, tied, 0)
        for param in engine.param_names():
            engine.set_param(param, s[f"param.{param}"])
        users = {k[len("users."):]: v for k, v in s.items() if k.startswith("users.")}
        marked = meta.get("user_session_starts", False)
        if not isinstance(marked, bool):
            raise ValueError(f"{name} is corrupted: bad user_session_starts {marked!r}")
        if marked:
            users["session_start"] = s["users.session_start"]
        else:  # a file from before the users' session starts were kept: their gaps cut the last session
            users["session_start"] = _gap_session_starts(s["users.history_offsets"], s["users.history_ts"],
                                                         model.session_gap)
        engine.load_users(users)
        # Copies: the sections are views at any byte offset of the file, the core reads aligned arrays.
        table = {key: s[f"transitions.{key}"].copy() for key in _TRANSITION_DTYPES}
        popularity = s["popularity"].astype(np.float64)
        if len(table["out"]) or len(table["weight"]):
            if table["weight"].shape != (1,):
                raise ValueError(f"{name} is corrupted: bad transition weight")
            engine.set_transitions(float(table["weight"][0]), table["offsets"], table["successors"],
                                   table["counts"], table["out"], popularity, table["repeat_curve"])
        item_ids = _decode_ids(s, "item_ids")
        user_ids = _decode_ids(s, "user_ids")
        n_users = engine.n_users()
        if len(user_ids) != n_users or len(item_ids) != engine.n_items:
            raise ValueError(f"{name} is corrupted: its id maps do not match the stored states")
        unknown = {k: v for k, v in meta.get("unknown_item_events", [])}
        model._attach(engine, user_ids, item_ids, popularity, unknown_items=unknown)
        # Files from before "1001" hashed as 1001 hold their users' last session hashes as text.
        model._session_digits = meta.get("session_digits_as_int", False) is True
        # One id, two states or two item rows: which one answers would be arbitrary. The id maps
        # are built here anyway (the item map on the first query otherwise).
        for kind, ids, index in (("user", user_ids, model._user_index), ("item", item_ids, model._item_index())):
            if len(index) != len(ids):
                twice = next(v for v, n in Counter(ids.tolist()).items() if n > 1)
                raise ValueError(f"{name} is corrupted: {kind} id {twice!r} appears twice")
        model.transition_weight_ = float(table["weight"][0]) if len(table["weight"]) else 0.0
        # Files from before session-start queries: scored from h, with the prior's sources.
        start = meta.get("session_start", [0.0, True])
        if not (isinstance(start, list) and len(start) == 2 and isinstance(start[0], (int, float))
                and not isinstance(start[0], bool) and 0.0 <= start[0] <= 1.0 and isinstance(start[1], bool)):
            raise ValueError(f"{name} is corrupted: bad session-start setting {start!r}")
        model.session_start_mix_ = engine.session_start_mix = float(start[0])
        model.session_start_sources_ = engine.session_start_sources = start[1]
        model.session_start_neighbors_ = _load_neighbors(engine, s, meta.get("session_start_neighbors"), name)
        _restore_training(model, meta.get("training", {}), name)
    except KeyError as e:
        raise ValueError(f"{name} is missing section {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{name} is corrupted: its metadata is not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{name} is corrupted: ids are not valid UTF-8") from None
    except (TypeError, OverflowError, AttributeError) as e:
        raise ValueError(f"{name} is corrupted: {e}") from None
    return model
