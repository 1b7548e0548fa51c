"""The CUDA engine (cpp/cuda) against the CPU engine: one window's forward pass, loss and gradients,
top-k scoring, and short fits. Tests that need a device skip, with the reason, where none is
visible; the errors for a missing CUDA build or device, build_info and ``to()`` run everywhere."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import hrnn
import reference as ref
import reference_windows as refw
from conftest import planted_log
from hrnn import _core, _device
from engine_cases import LOSS_CASES, LOSS_IDS, cpp_window, norm_rel_err

COMPILED = hrnn.build_info()["cuda_compiled"]
REASON = _device.cuda_unavailable_reason()
needs_gpu = pytest.mark.skipif(REASON is not None, reason=f"needs a CUDA device: {REASON}")
without_gpu = pytest.mark.skipif(REASON is None, reason="a CUDA device is visible here")

FIT = dict(hidden_dimension=32, n_sample=16, batch_size=8, bptt=8, epochs=2, show_progress=False,
           num_threads=1, random_state=0)


def fitted(**kw):
    users, items, ts = planted_log(n_users=60, n_items=40, length=20)
    return hrnn.HRNN(**dict(FIT, **kw)).fit((users, items, ts))


# ------------------------------------------------------------------------------------ everywhere

def test_build_info_reports_cuda():
    info = hrnn.build_info()
    assert isinstance(info["cuda_compiled"], bool)
    assert isinstance(info["cuda_devices"], int) and info["cuda_devices"] >= 0
    if not info["cuda_compiled"]:
        assert info["cuda_devices"] == 0
    assert (REASON is None) == (info["cuda_devices"] > 0)


@without_gpu
def test_asking_for_cuda_names_the_reason():
    why = "built without CUDA" if not COMPILED else "no CUDA device is visible"
    with pytest.raises(ValueError, match=why):
        hrnn.HRNN(device="cuda")
    with pytest.raises(ValueError, match=why):
        hrnn.HRNN().set_params(device="cuda")
    m = fitted()
    expected = m.recommend_batch(list(m.user_ids_[:5]))
    with pytest.raises(ValueError, match=why):
        m.to("cuda")
    assert m.device == "cpu"
    got = m.recommend_batch(list(m.user_ids_[:5]))  # the model still answers, on the CPU
    np.testing.assert_array_equal(got[0], expected[0])


@pytest.mark.skipif(not COMPILED or REASON is None, reason="needs a CUDA build on a machine without a device")
def test_cuda_build_without_device_raises_instead_of_crashing():
    engine = _core.Engine(10, 8, True, 0)
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        _core.cuda_attach(engine)
    assert engine.device == "cpu"
    p = ref.init_params(10, 8, True, seed=0)
    w = refw.make_window(10, 8, 2, 2, 3, seed=1)
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        _core.cuda_window_loss_grad(ref.to_float32(p), cpp_window(w))


def test_to_checks_the_device_name():
    m = hrnn.HRNN()
    assert m.to("cpu") is m and m.device == "cpu"
    for bad in ("tpu", "CUDA", None, 0):
        with pytest.raises((ValueError, TypeError), match="device"):
            m.to(bad)
    assert m.device == "cpu"


@without_gpu
def test_a_cuda_model_file_loads_on_the_cpu(tmp_path):
    m = fitted()
    m.device = "cuda"  # as saved on a machine with a GPU (the file does not depend on the device)
    m.save(tmp_path / "m.hrnn")
    with pytest.warns(RuntimeWarning, match="loaded on the CPU"):
        back = hrnn.load(tmp_path / "m.hrnn")
    assert back.device == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hrnn.load(tmp_path / "m.hrnn", device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        hrnn.load(tmp_path / "m.hrnn", device="cuda")
    users = list(m.user_ids_[:10])
    np.testing.assert_array_equal(back.recommend_batch(users)[0], m.recommend_batch(users)[0])


# ----------------------------------------------------------------------------- on a CUDA device

def run_both(p, w, **kw):
    args = dict(params=ref.to_float32(p), window=cpp_window(w), **kw)
    return _core.window_loss_grad(**args), _core.cuda_window_loss_grad(**args)


def assert_same_window(cpu, gpu, names, tol=1e-4):
    np.testing.assert_allclose(gpu["loss"], cpu["loss"], rtol=tol)
    np.testing.assert_allclose(gpu["h"], cpu["h"], rtol=tol, atol=1e-5)
    np.testing.assert_allclose(gpu["u"], cpu["u"], rtol=tol, atol=1e-5)
    assert set(gpu["grads"]) == set(cpu["grads"])
    errors = {n: norm_rel_err(np.asarray(gpu["grads"][n], np.float64), np.asarray(cpu["grads"][n], np.float64))
              for n in names}
    bad = {n: e for n, e in errors.items() if not e < tol}
    assert not bad, f"gradients differ from the CPU engine's: {bad}"


@needs_gpu
@pytest.mark.parametrize("extras", [False, True], ids=["no-extras", "extras"])
@pytest.mark.parametrize("variant", [{}, {"resets": False}, {"p_new_session": 1.0}, {"inactive_tail": False}],
                         ids=["default", "no-resets", "all-new-sessions", "full-lanes"])
@pytest.mark.parametrize("loss,logq,bpreg", LOSS_CASES, ids=LOSS_IDS)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_window_equals_the_cpu_engine(tied, loss, logq, bpreg, variant, extras):
    n_items, H, T, B, S = 40, 12, 16, 6, 9
    p = ref.init_params(n_items, H, tied, seed=3)
    w = refw.make_window(n_items, H, T, B, S, seed=4, extras=extras, **variant)
    cpu, gpu = run_both(p, w, loss=loss, logq=logq, bpreg=bpreg)
    assert_same_window(cpu, gpu, p)


@needs_gpu
@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
def test_window_with_dropout_uses_the_cpu_masks(loss):
    n_items, H, T, B, S = 30, 10, 8, 5, 7
    p = ref.init_params(n_items, H, False, seed=5)
    w = refw.make_window(n_items, H, T, B, S, seed=6, extras=True)
    cpu, gpu = run_both(p, w, loss=loss, dropout=0.4)
    assert_same_window(cpu, gpu, p)


@needs_gpu
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_large_window_equals_the_cpu_engine(tied):
    """Sizes past one GEMM tile (64) in every dimension: lanes, candidates and hidden units."""
    n_items, H, T, B, S = 400, 72, 32, 70, 130
    p = ref.init_params(n_items, H, tied, seed=7, scale=0.1)
    w = refw.make_window(n_items, H, T, B, S, seed=8, extras=True)
    cpu, gpu = run_both(p, w, loss="softmax", logq=True)
    assert_same_window(cpu, gpu, p, tol=5e-4)


@needs_gpu
def test_window_matches_the_reference_loss():
    p = ref.init_params(20, 8, True, seed=9)
    w = refw.make_window(20, 8, 10, 4, 5, seed=10, extras=True)
    got = _core.cuda_window_loss_grad(ref.to_float32(p), cpp_window(w))
    np.testing.assert_allclose(got["loss"], ref.window_forward(p, w)["loss"], rtol=1e-5)


@needs_gpu
def test_malformed_window_is_rejected_on_cuda_too():
    p = ref.init_params(20, 8, True, seed=11)
    w = refw.make_window(20, 8, 4, 3, 5, seed=12)
    w["negatives"][0, 0] = 20
    with pytest.raises(ValueError, match="negative sample out of range"):
        _core.cuda_window_loss_grad(ref.to_float32(p), cpp_window(w))


def random_engine(n_items, hidden, n_users, seed, long_users=0):
    """An engine with random parameters (repeat score on) and states for n_users users (the first
    long_users with 300 events each, the others a few)."""
    rng = np.random.default_rng(seed)
    e = _core.Engine(n_items, hidden, False, seed)
    for name in e.param_names():
        shape = e.get_param(name).shape
        e.set_param(name, rng.normal(0, 0.5, shape).astype(np.float32))
    O, bo = e.get_param("O"), e.get_param("bo")
    O[n_items // 2: n_items // 2 + 50] = O[:50]  # exact ties, broken by the lower item index
    bo[n_items // 2: n_items // 2 + 50] = bo[:50]
    e.set_param("O", O)
    e.set_param("bo", bo)
    lengths = rng.integers(1, 12, n_users)
    lengths[:long_users] = 300
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(0, n_items, offsets[-1]).astype(np.int32)
    ts = np.concatenate([np.sort(rng.uniform(1.6e9, 1.6e9 + 1e5, n)) for n in lengths])
    new = np.zeros(offsets[-1], np.uint8)
    new[offsets[:-1]] = 1
    e.compute_states(offsets, items, ts, new)
    e.set_fallback_scores(rng.random(n_items).astype(np.float32))
    return e


@needs_gpu
@pytest.mark.parametrize("k", [1, 25, 500])
@pytest.mark.parametrize("exclude_interacted", [False, True])
def test_top_k_equals_the_cpu(k, exclude_interacted):
    e = random_engine(5000, 48, 300, seed=13)
    users = np.concatenate([np.arange(300), [-1, 299, 0]]).astype(np.int64)  # a cold user, repeats
    excl = np.arange(100, 160, dtype=np.int32)
    cpu = e.recommend_batch(users, k, exclude_interacted=exclude_interacted, exclude=excl)
    _core.cuda_attach(e)
    assert e.device == "cuda"
    gpu = e.recommend_batch(users, k, exclude_interacted=exclude_interacted, exclude=excl)
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-5, atol=1e-5)
    # Item lists agree except where two scores are within float rounding of each other.
    differ = gpu[0] != cpu[0]
    assert np.all(np.abs(gpu[1][differ] - cpu[1][differ]) < 1e-4), "top-k items differ beyond near-ties"
    assert differ.mean() < 0.01
    assert not np.isin(gpu[0], excl).any()


@needs_gpu
def test_top_k_with_an_include_list_or_a_huge_k_is_answered_exactly():
    e = random_engine(3000, 16, 20, seed=14)
    users = np.arange(20, dtype=np.int64)
    include = np.arange(0, 3000, 7, dtype=np.int32)
    cpu = [e.recommend_batch(users, 10, include=include), e.recommend_batch(users, 2500)]
    _core.cuda_attach(e)
    gpu = [e.recommend_batch(users, 10, include=include), e.recommend_batch(users, 2500)]
    for c, g in zip(cpu, gpu):
        np.testing.assert_array_equal(g[0], c[0])
        np.testing.assert_array_equal(g[1], c[1])


def scored(e, users, k, scoring, **query):
    _core.cuda_attach(e, scoring=scoring)
    return e.recommend_batch(users, k, **query)


@needs_gpu
@pytest.mark.parametrize("hidden", [43, 64, 256])
@pytest.mark.parametrize("k", [1, 25, 100])
@pytest.mark.parametrize("exclude_interacted", [False, True])
def test_candidate_pass_is_the_full_pass_bit_for_bit(hidden, k, exclude_interacted):
    # A catalogue large enough for "auto" to take the candidate pass, with exact ties, NaN and
    # -inf scores, exclusions and repeat boosts (items the device must skip).
    n_items = 40_000
    e = random_engine(n_items, hidden, 400, seed=hidden + k)
    O, bo = e.get_param("O"), e.get_param("bo")
    O[n_items // 2: n_items // 2 + 500], bo[n_items // 2: n_items // 2 + 500] = O[:500], bo[:500]
    O[7:9] = np.nan
    bo[11:13] = -np.inf
    e.set_param("O", O)
    e.set_param("bo", bo)
    users = np.concatenate([np.arange(400), [-1, 399, 0]]).astype(np.int64)
    query = dict(exclude_interacted=exclude_interacted, exclude=np.arange(100, 160, dtype=np.int32))
    cpu = e.recommend_batch(users, k, **query)
    full = scored(e, users, k, "full", **query)
    for scoring in ("candidates", "auto"):
        got = scored(e, users, k, scoring, **query)
        np.testing.assert_array_equal(got[0], full[0], err_msg=scoring)
        np.testing.assert_array_equal(got[1], full[1], err_msg=scoring)
    np.testing.assert_allclose(full[1], cpu[1], rtol=1e-5, atol=1e-5)
    assert not np.isin(full[0], [7, 8, 11, 12] + list(range(100, 160))).any()


@needs_gpu
def test_rows_the_candidate_pass_cannot_answer_fall_back_to_the_full_pass():
    # Every score equal: every item passes the threshold, far more than a row keeps.
    n_items = 40_000
    e = random_engine(n_items, 16, 50, seed=3)
    e.set_param("O", np.tile(e.get_param("O")[:1], (n_items, 1)))
    e.set_param("bo", np.zeros(n_items, np.float32))
    users = np.arange(50, dtype=np.int64)
    full = scored(e, users, 30, "full")
    got = scored(e, users, 30, "candidates")
    np.testing.assert_array_equal(got[0], full[0])
    np.testing.assert_array_equal(got[1], full[1])
    cpu_items = np.sort(e.recommend_batch(users, 30)[0], axis=1)
    np.testing.assert_array_equal(np.sort(got[0], axis=1), cpu_items)  # ties: the lowest indices


@needs_gpu
def test_rows_the_candidate_pass_leaves_are_answered_beside_the_others():
    # A block of 5,000 equal items overflows the candidate list of the users who rank it first, and
    # users with long histories exclude more items than the pass takes: both are answered by the
    # full pass, in the same batch as the rows the candidate pass answers.
    n_items = 40_000
    e = random_engine(n_items, 32, 300, seed=9, long_users=20)
    users = np.arange(300, dtype=np.int64)
    O, bo = e.get_param("O"), e.get_param("bo")
    O[:5000], bo[:5000] = O[0], -np.inf
    e.set_param("O", O)
    e.set_param("bo", bo)
    kth = e.recommend_batch(users, 25, exclude_interacted=True)[1][:, -1]  # without the block
    block = np.array([e.user_state(u)[1] @ O[0] for u in users])
    bo[:5000] = np.median(kth - block)  # the block comes first for about half of the users
    e.set_param("bo", bo)
    full = scored(e, users, 25, "full", exclude_interacted=True)
    got = scored(e, users, 25, "candidates", exclude_interacted=True)
    np.testing.assert_array_equal(got[0], full[0])
    np.testing.assert_array_equal(got[1], full[1])
    in_block = (full[0] < 5000).all(axis=1)
    assert in_block.any() and not in_block.all()  # both kinds of rows are in the batch


@needs_gpu
def test_candidate_pass_on_a_small_catalogue_and_a_large_k():
    e = random_engine(3_000, 48, 100, seed=5)
    users = np.arange(100, dtype=np.int64)
    for k in (1, 7, 600):
        full = scored(e, users, k, "full", exclude_interacted=True)
        got = scored(e, users, k, "candidates", exclude_interacted=True)
        np.testing.assert_array_equal(got[0], full[0], err_msg=f"k={k}")
        np.testing.assert_array_equal(got[1], full[1], err_msg=f"k={k}")


@pytest.mark.skipif(not COMPILED, reason="needs a CUDA build")
def test_unknown_scoring_mode_is_rejected():
    with pytest.raises(ValueError, match="scoring must be 'auto', 'full' or 'candidates'"):
        _core.cuda_attach(_core.Engine(10, 8, True, 0), scoring="fast")


@needs_gpu
@pytest.mark.parametrize("kw", [{}, {"tie_embeddings": False, "optimizer": "adam", "learning_rate": 0.01},
                                {"loss": "bpr-max", "momentum": 0.5, "dropout": 0.2}],
                         ids=["defaults", "untied-adam", "bprmax-momentum-dropout"])
def test_a_short_fit_gives_close_losses_and_models(kw):
    cpu = fitted(**kw)
    gpu = fitted(device="cuda", **kw)
    assert gpu.device == "cuda"
    for a, b in zip(cpu.history_, gpu.history_):
        assert a["events"] == b["events"]
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=5e-3)
    wc, wg = cpu.get_weights(), gpu.get_weights()
    for name in wc:
        assert norm_rel_err(wg[name].astype(np.float64), wc[name].astype(np.float64)) < 1e-2, name
    users = list(cpu.user_ids_)
    top_c, top_g = cpu.recommend_batch(users, 10)[0], gpu.recommend_batch(users, 10)[0]
    assert (top_c[:, 0] == top_g[:, 0]).mean() > 0.9


@needs_gpu
def test_cuda_model_file_is_the_cpu_model_file(tmp_path):
    m = fitted(device="cuda")
    m.save(tmp_path / "m.hrnn")
    back = hrnn.load(tmp_path / "m.hrnn")
    assert back.device == "cuda"
    on_cpu = hrnn.load(tmp_path / "m.hrnn", device="cpu")
    users = list(m.user_ids_)
    a, b, c = (x.recommend_batch(users, 20) for x in (m, back, on_cpu))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(c[1], a[1], rtol=1e-5, atol=1e-5)
    assert on_cpu.to("cuda").device == "cuda"
    np.testing.assert_array_equal(on_cpu.recommend_batch(users, 20)[0], a[0])
