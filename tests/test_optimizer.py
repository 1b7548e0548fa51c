"""The optimizer alone (``_core.optimizer_steps``) against a float64 numpy version of its rules:
Adagrad (accumulated squares, optional momentum) and Adam (bias-corrected), the dense blocks (rV at
a tenth of the learning rate), and the sparse item rows: only the rows a step touched move, and with
tied embeddings an item's input and output gradients are summed into one update of its row."""
import numpy as np
import pytest

from hrnn import _core

import reference as ref

N_ITEMS, H = 12, 4
ADAGRAD_EPS, ADAM_EPS, BETA1, BETA2, RV_LR_SCALE = 1e-6, 1e-8, 0.9, 0.999, 0.1


def make_steps(params, n_steps, seed):
    """Gradients of n_steps steps: every dense block, and item rows that overlap between steps and
    between the input and output sides (one touched row has an exactly zero gradient)."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(n_steps):
        step = {name: rng.normal(0, 0.5, v.shape).astype(np.float32)
                for name, v in params.items() if name not in ("E", "O", "bo")}
        for side, width in (("E", H), ("out", H + 1)):
            rows = rng.choice(N_ITEMS - 2, size=5, replace=False).astype(np.int32)  # the last 2: never
            grad = rng.normal(0, 0.5, (len(rows), width)).astype(np.float32)
            grad[0] = 0
            step[f"{side}_rows"], step[f"{side}_grad"] = rows, grad
        steps.append(step)
    return steps


def reference_steps(params, steps, optimizer, lr, momentum):
    p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    first = {k: np.zeros_like(v) for k, v in p.items()}
    second = {k: np.zeros_like(v) for k, v in p.items()}

    def update(name, index, g, t):
        a, b, rate = first[name], second[name], lr * (RV_LR_SCALE if name == "rV" else 1)
        if optimizer == "adagrad":
            a[index] += g * g
            u = rate * g / np.sqrt(a[index] + ADAGRAD_EPS)
            if momentum:
                b[index] = momentum * b[index] + u
                u = b[index]
        else:
            a[index] = BETA1 * a[index] + (1 - BETA1) * g
            b[index] = BETA2 * b[index] + (1 - BETA2) * g * g
            u = rate * (a[index] / (1 - BETA1 ** t)) / (np.sqrt(b[index] / (1 - BETA2 ** t)) + ADAM_EPS)
        p[name][index] -= u

    tied = "O" not in params
    for t, step in enumerate(steps, 1):
        for name in p:
            if name not in ("E", "O", "bo"):
                update(name, Ellipsis, step[name].astype(np.float64), t)
        emb = dict(zip(step["E_rows"].tolist(), step["E_grad"].astype(np.float64)))
        for item, g in zip(step["out_rows"].tolist(), step["out_grad"].astype(np.float64)):
            row = g[:H] + emb.pop(item, 0) if tied else g[:H]
            update("E" if tied else "O", item, row, t)
            update("bo", item, g[H], t)
        for item, g in emb.items():
            update("E", item, g, t)
    return p


@pytest.mark.parametrize("optimizer,momentum", [("adagrad", 0.0), ("adagrad", 0.5), ("adam", 0.0)],
                         ids=["adagrad", "adagrad-momentum", "adam"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_steps_match_the_rules(optimizer, momentum, tied, num_threads):
    params = ref.init_params(N_ITEMS, H, tied, seed=3)
    steps = make_steps(params, 4, seed=4)
    got = _core.optimizer_steps(ref.to_float32(params), steps, optimizer=optimizer, learning_rate=0.05,
                                momentum=momentum, num_threads=num_threads)
    expected = reference_steps(params, steps, optimizer, 0.05, momentum)
    assert set(got) == set(params)
    for name in params:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for name in ("E", "O", "bo") if not tied else ("E", "bo"):  # rows no step touched stay put
        np.testing.assert_array_equal(got[name][-2:], ref.to_float32(params)[name][-2:])


def test_adagrad_steps_shrink_with_the_accumulated_squares():
    # The same gradient g three times: Adagrad moves by lr * (1 + 1/sqrt(2) + 1/sqrt(3)), not 3 lr.
    params = ref.init_params(N_ITEMS, H, False, seed=5)
    step = {k: np.full(v.shape, 2.0, np.float32) for k, v in params.items() if k not in ("E", "O", "bo")}
    step.update(E_rows=np.zeros(0, np.int32), E_grad=np.zeros((0, H), np.float32),
                out_rows=np.zeros(0, np.int32), out_grad=np.zeros((0, H + 1), np.float32))
    got = _core.optimizer_steps(ref.to_float32(params), [step] * 3, learning_rate=0.05)
    moved = ref.to_float32(params)["Wg"] - got["Wg"]
    np.testing.assert_allclose(moved, 0.05 * (1 + 2 ** -0.5 + 3 ** -0.5), rtol=1e-4)


@pytest.mark.parametrize("change,message", [
    (lambda s: s.update(out_rows=np.array([1, 1, 2, 3, 4], np.int32)), "distinct items"),
    (lambda s: s.update(E_rows=np.array([0, 1, 2, 3, N_ITEMS], np.int32)), r"\[0, n_items\)"),
    (lambda s: s.pop("rV"), "missing 'rV'"),
    (lambda s: s.pop("out_grad"), "'out_rows' and 'out_grad'"),
    (lambda s: s.update(E_grad=np.zeros((5, H + 1), np.float32)), "E_grad must have shape"),
])
def test_malformed_steps_are_rejected(change, message):
    params = ref.to_float32(ref.init_params(N_ITEMS, H, False, seed=6))
    step = make_steps(params, 1, seed=7)[0]
    change(step)
    with pytest.raises(ValueError, match=message):
        _core.optimizer_steps(params, [step])
    with pytest.raises(ValueError, match="optimizer must be"):
        _core.optimizer_steps(params, [], optimizer="sgd")
