"""hrnn.per_unit_scores and hrnn.paired_difference: the per-unit shares of evaluate's details and
the paired comparison of two models on the same split."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn.evaluate import NEXT_ITEM_METRICS, PERSONALIZE_METRICS
from hrnn.synthetic import make_log

FAST = {"epochs": 1, "hidden_dimension": 32, "n_sample": 32, "batch_size": 16, "bptt": 4, "num_threads": 1}


def next_item_details(ranks):
    """Two test sessions: user a's first event and 2 more, user b's first event and 1 more."""
    return pd.DataFrame({"USER_ID": ["a", "b", "a", "b", "a"], "position": [0, 0, 1, 1, 2],
                         "ITEM_ID": [1, 2, 3, 4, 5], "rank": ranks})


def personalize_details(p5, mrr):
    return pd.DataFrame({"USER_ID": ["a", "b", "c"], "n_input": [5, 6, 7], "n_truth": [1, 1, 2],
                         "precision@5": p5, "mrr@25": mrr})


@pytest.fixture(scope="module")
def log():
    return make_log(3_000, n_users=60, n_items=300, seed=1)


def test_per_unit_scores_by_hand():
    d = next_item_details([3, 0, 1, 25, 4])  # 25 is outside the top 20
    np.testing.assert_array_equal(hrnn.per_unit_scores(d, "first_recall@20"), [1.0, 0.0])
    np.testing.assert_array_equal(hrnn.per_unit_scores(d, "recall@20"), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(hrnn.per_unit_scores(d, "mrr@20"), [1.0, 0.0, 0.25])
    p = personalize_details([0.2, 0.0, 0.4], [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(hrnn.per_unit_scores(p, "mrr@25"), [1.0, 0.0, 0.5])


def test_paired_difference_by_hand():
    a = next_item_details([1, 2, 1, 0, 2])
    b = next_item_details([1, 0, 2, 0, 0])
    r = hrnn.paired_difference(a, b, "mrr@20")  # per event: a 1 - 0.5, b 0 - 0, a 0.5 - 0
    assert (r["n"], r["users"]) == (3, 2) and r["difference"] == pytest.approx(1 / 3)
    # Clustered by user: residuals 1/6, -1/3, 1/6 sum to 1/3 for a and -1/3 for b;
    # sqrt(2 / 1 * (1/9 + 1/9)) / 3 = 2/9 (the events taken as independent: 1/6).
    assert r["standard_error"] == pytest.approx(2 / 9) and r["z"] == pytest.approx(1.5)
    r = hrnn.paired_difference(a, b, "first_recall@20")  # the sessions: 1 - 1, 1 - 0
    assert (r["n"], r["users"], r["difference"]) == (2, 2, 0.5)
    assert r["standard_error"] == pytest.approx(np.std([0.0, 1.0], ddof=1) / np.sqrt(2))
    # One unit, or units of one user, cannot tell their difference from noise.
    session = {"USER_ID": ["a", "a", "a"], "position": [0, 1, 2], "ITEM_ID": [1, 2, 3]}
    one = hrnn.paired_difference(pd.DataFrame({**session, "rank": [1, 2, 1]}).iloc[:2],
                                 pd.DataFrame({**session, "rank": [1, 0, 0]}).iloc[:2], "mrr@20")
    assert one["n"] == 1 and one["difference"] == 0.5 and np.isnan(one["standard_error"]) and np.isnan(one["z"])
    one_user = hrnn.paired_difference(pd.DataFrame({**session, "rank": [1, 2, 1]}),
                                      pd.DataFrame({**session, "rank": [1, 0, 0]}), "mrr@20")
    assert (one_user["n"], one_user["users"]) == (2, 1) and np.isnan(one_user["standard_error"])
    # No unit (only first events: nothing for mrr@20): nothing measured.
    first_only = pd.DataFrame({**session, "rank": [1, 2, 1]}).iloc[:1]
    none = hrnn.paired_difference(first_only, first_only, "mrr@20")
    assert none["n"] == 0 and all(np.isnan(none[k]) for k in ("difference", "standard_error", "z"))
    # Several runs of a model (e.g. seeds) are averaged unit by unit first.
    r = hrnn.paired_difference([a, b], b, "recall@20")  # A's mean per event: 1, 0.5, 0.5
    assert r["difference"] == pytest.approx(0.5 / 3)
    # Identical lists: no difference and no error; a constant one: an infinite z, of its sign.
    behind = hrnn.paired_difference(next_item_details([1, 2, 0, 0, 0]), next_item_details([1, 2, 1, 3, 2]),
                                    "recall@20")  # every event found by B only
    assert (behind["difference"], behind["z"]) == (-1.0, -np.inf)
    assert hrnn.paired_difference(a, a, "mrr@20") == {"difference": 0.0, "standard_error": 0.0, "z": 0.0,
                                                      "n": 3, "users": 2}
    p = personalize_details([0.2, 0.0, 0.4], [1.0, 0.0, 0.5])
    q = personalize_details([0.0, 0.0, 0.2], [0.5, 0.0, 0.5])
    assert hrnn.paired_difference(p, q, "mrr@25")["difference"] == pytest.approx(0.5 / 3)
    assert hrnn.paired_difference(p.assign(**{"precision@5": 0.5}), p.assign(**{"precision@5": 0.25}),
                                  "precision@5")["z"] == np.inf


def test_paired_difference_rejects_what_does_not_pair():
    a = next_item_details([1, 2, 1, 0, 2])
    with pytest.raises(ValueError, match="different splits"):
        hrnn.paired_difference(a, a.assign(USER_ID=["a", "c", "a", "c", "a"]), "recall@20")
    with pytest.raises(ValueError, match="different splits"):
        hrnn.paired_difference([a, a.iloc[:4]], a, "recall@20")
    # The same users, but other targets / held-out counts: fed different events (event filters).
    with pytest.raises(ValueError, match="different splits"):
        hrnn.paired_difference(a, a.assign(ITEM_ID=[1, 2, 3, 4, 6]), "recall@20")
    p = personalize_details([0.2] * 3, [1.0] * 3)
    with pytest.raises(ValueError, match="different splits"):
        hrnn.paired_difference(p, p.assign(n_truth=[1, 2, 2]), "precision@5")
    with pytest.raises(ValueError, match="coverage"):
        hrnn.paired_difference(personalize_details([0.2] * 3, [1.0] * 3),
                               personalize_details([0.2] * 3, [1.0] * 3), "coverage")
    with pytest.raises(ValueError, match="ndcg@10"):
        hrnn.paired_difference(a, a, "ndcg@10")  # not a next-item metric
    with pytest.raises(ValueError, match="'position'"):
        hrnn.paired_difference(a.drop(columns="position").assign(rank=1), a, "recall@20")
    with pytest.raises(ValueError, match="'position'"):
        hrnn.per_unit_scores(a.drop(columns="position"), "recall@20")
    for bad in (np.nan, -1, np.inf):  # (a NaN rank was scored as a miss)
        with pytest.raises(ValueError, match="rank has missing, negative or infinite values"):
            hrnn.paired_difference(a.assign(rank=bad), a, "recall@20")
    with pytest.raises(ValueError, match="lack the column 'ndcg@10'"):
        hrnn.per_unit_scores(personalize_details([0.2] * 3, [1.0] * 3), "ndcg@10")
    with pytest.raises(ValueError, match="no details"):
        hrnn.paired_difference([], a, "recall@20")
    with pytest.raises(TypeError, match="DataFrame"):
        hrnn.per_unit_scores({"rank": [1]}, "recall@20")
    with pytest.raises(TypeError, match="dict"):
        hrnn.paired_difference([a, {"rank": [1]}], a, "recall@20")


@pytest.mark.parametrize("protocol", ["personalize", "next-item"])
def test_per_unit_shares_average_to_the_metrics(log, protocol):
    scores, details = hrnn.evaluate(hrnn.HRNN(**FAST, random_state=0), log, protocol=protocol,
                                    return_details=True)
    for m in NEXT_ITEM_METRICS if protocol == "next-item" else PERSONALIZE_METRICS[:-1]:
        assert hrnn.per_unit_scores(details, m).mean() == pytest.approx(scores[m], abs=1e-12), m


@pytest.mark.parametrize("protocol,metric", [("personalize", "ndcg@10"), ("next-item", "mrr@20")])
def test_paired_difference_of_two_evaluated_models(log, protocol, metric):
    runs = [hrnn.evaluate(m, log, protocol=protocol, return_details=True)
            for m in (hrnn.HRNN(**FAST, random_state=0), hrnn.baselines.Popularity())]
    r = hrnn.paired_difference(runs[0][1], runs[1][1], metric)
    assert r["difference"] == pytest.approx(runs[0][0][metric] - runs[1][0][metric], abs=1e-12)
    assert r["n"] == (runs[0][0]["n_events"] if protocol == "next-item" else runs[0][0]["n_users"])
    assert r["standard_error"] > 0
