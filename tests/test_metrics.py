"""Ranking metrics against hand-computed cases, and the vectorised forms against the scalar ones."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrnn import metrics as M

L2 = math.log2


class TestHandComputed:
    def test_precision(self):
        assert M.precision_at_k([1, 2, 3, 4, 5], {2, 5, 9}, 5) == pytest.approx(2 / 5)
        assert M.precision_at_k([1, 2, 3, 4, 5], {2, 5, 9}, 3) == pytest.approx(1 / 3)
        # A short list still divides by k (Personalize's definition).
        assert M.precision_at_k([1, 2], {2}, 5) == pytest.approx(1 / 5)
        assert M.precision_at_k([], {2}, 5) == 0.0

    def test_ndcg(self):
        # hits at ranks 2 and 3; ideal: 2 relevant items at ranks 1 and 2
        expected = (1 / L2(3) + 1 / L2(4)) / (1 + 1 / L2(3))
        assert M.ndcg_at_k([1, 2, 3], {2, 3}, 3) == pytest.approx(expected)
        # |truth| > k: the ideal DCG only counts k items
        expected = (1 / L2(3)) / (1 + 1 / L2(3))
        assert M.ndcg_at_k([9, 1], {1, 2, 3, 4}, 2) == pytest.approx(expected)
        assert M.ndcg_at_k([1, 2], {1, 2}, 2) == pytest.approx(1.0)
        assert M.ndcg_at_k([1, 2], {3}, 2) == 0.0
        assert M.ndcg_at_k([1, 2], [], 2) == 0.0

    def test_mrr(self):
        assert M.mrr_at_k([5, 6, 7], {7}, 3) == pytest.approx(1 / 3)
        assert M.mrr_at_k([5, 6, 7], {7}, 2) == 0.0
        assert M.mrr_at_k([5, 6, 7], {6, 7}, 3) == pytest.approx(1 / 2)
        assert M.mrr_at_k([5, 6, 7], 5, 3) == 1.0  # a single target

    def test_recall(self):
        assert M.recall_at_k([1, 3], {1, 2}, 2) == pytest.approx(0.5)
        assert M.recall_at_k([4, 7, 9], 9, 3) == 1.0  # single target: hit
        assert M.recall_at_k([4, 7, 9], 9, 2) == 0.0  # ... outside k: miss
        assert M.recall_at_k([4, 7], [], 2) == 0.0

    def test_string_ids_are_single_targets(self):
        assert M.recall_at_k(["ab", "cd"], "cd", 2) == 1.0
        assert M.mrr_at_k(np.array(["ab", "cd"]), "cd", 2) == 0.5
        assert M.precision_at_k(["a", "b"], ["b", "b", "x"], 2) == 0.5  # duplicates count once

    def test_numpy_and_python_ids_mix(self):
        assert M.precision_at_k(np.array([1, 2], dtype=np.int64), {2}, 2) == 0.5
        assert M.recall_at_k([1, 2], np.int32(2), 2) == 1.0

    def test_one_recommended_id(self):
        """A scalar or a string is one recommended id, not a sequence of characters."""
        assert M.precision_at_k("abc", ["abc"], 1) == 1.0
        assert M.recall_at_k(5, [5], 1) == 1.0

    def test_missing_truth_ids_count_nowhere(self):
        """None / NaN in a truth set is no id, as in hit_matrix: recall 1, not 0.5."""
        assert M.recall_at_k(["a", "b"], ["a", None], 2) == 1.0
        assert M.ndcg_at_k(["a", "b"], ["a", float("nan")], 2) == 1.0
        hits, n_truth = M.hit_matrix(np.array([["a", "b"]], dtype=object), [["a", None]])
        assert n_truth.tolist() == [1]
        nullable = pd.Series([1, None], dtype="Int64")  # (its missing value is pd.NA)
        assert M.recall_at_k([1], nullable, 1) == 1.0
        assert M.hit_matrix([[1]], [nullable])[1].tolist() == [1]

    def test_a_zero_dimensional_array_is_one_id(self):
        assert M.recall_at_k([5, 6], np.array(6), 2) == 1.0
        assert M.precision_at_k(np.array(5), [5], 1) == 1.0

    def test_a_hit_matrix_without_columns(self):
        empty = np.zeros((2, 0), dtype=bool)
        assert M.first_hit_rank(empty).tolist() == [0, 0]
        assert M.mrr_from_hits(empty, 3).tolist() == M.precision_from_hits(empty, 3).tolist() == [0.0, 0.0]

    def test_mixed_id_types_in_a_list(self):
        """A list of ints and strings stays ids (np.asarray would make 1 the string "1")."""
        assert M.precision_at_k([1, "a"], [1, "a"], 2) == 1.0
        assert M.mrr_at_k([1, "a"], "a", 2) == 0.5
        assert M.precision_at_k([1, "a"], ["1"], 2) == 0.0

    def test_coverage(self):
        assert M.coverage(np.array([[1, 2], [2, 3]]), 10) == pytest.approx(0.3)
        assert M.coverage(np.array([["a", "b"], ["a", "b"]], dtype=object), 4) == 0.5
        assert M.coverage(np.zeros((0, 5)), 3) == 0.0
        with pytest.raises(ValueError):
            M.coverage([[1]], 0)

    @pytest.mark.parametrize("k", [0, -1, 2.0, True, None])
    def test_bad_k(self, k):
        with pytest.raises(ValueError, match="k must be"):
            M.precision_at_k([1], {1}, k)


class TestVectorised:
    def test_hit_matrix_ragged(self):
        rec = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
        hits, n_truth = M.hit_matrix(rec, [[3, 1, 1], [], np.array([9, 10, 11, 12])])
        np.testing.assert_array_equal(hits, [[1, 0, 1], [0, 0, 0], [0, 0, 1]])
        np.testing.assert_array_equal(n_truth, [2, 0, 4])

    def test_hit_matrix_object_ids(self):
        rec = np.array([["a", "b"], ["c", "a"]], dtype=object)
        hits, n_truth = M.hit_matrix(rec, [{"b"}, ["a", "z"]])
        np.testing.assert_array_equal(hits, [[0, 1], [0, 1]])
        np.testing.assert_array_equal(n_truth, [1, 2])

    def test_padding_and_repeated_ids_are_not_hits(self):
        """None pads a short list (never a hit, even where its code would meet the previous
        row's last truth id); an id listed twice counts once, so no metric exceeds 1."""
        rec = np.array([["a", "b"], ["a", None]], dtype=object)
        hits, n_truth = M.hit_matrix(rec, [["a", "b"], ["a"]])
        np.testing.assert_array_equal(hits, [[1, 1], [1, 0]])
        rec = np.array([[9, 9, 9, 9, 9], [1, 9, 1, 2, 3]], dtype=object)
        hits, n_truth = M.hit_matrix(rec, [[9], [1, 3]])
        np.testing.assert_array_equal(hits, [[1, 0, 0, 0, 0], [1, 0, 0, 0, 1]])
        assert M.ndcg_from_hits(hits, n_truth, 5).max() <= 1.0
        assert M.precision_at_k([9, 9, 9], {9}, 3) == pytest.approx(1 / 3)
        assert M.ndcg_at_k([9, 9, 9], {9}, 3) == 1.0
        assert M.coverage(np.array([["a", None], ["b", None]], dtype=object), 4) == 0.5

    def test_hit_matrix_missing_truth_ids_match_nothing(self):
        """None / NaN in a truth set is no id: its code (-1) must not turn into a key of the
        previous row, nor count in n_truth."""
        hits, n_truth = M.hit_matrix(np.array([[1, 2], [2, 1]]), [[1], [None, 2]])
        np.testing.assert_array_equal(hits, [[1, 0], [1, 0]])
        np.testing.assert_array_equal(n_truth, [1, 1])
        hits, n_truth = M.hit_matrix(np.array([[1, 2], [2, 1]]), [[None, 2], [1]])
        np.testing.assert_array_equal(hits, [[0, 1], [0, 1]])
        np.testing.assert_array_equal(n_truth, [1, 1])
        hits, n_truth = M.hit_matrix(np.array([[1.0, 2.0]]), [np.array([np.nan, 2.0])])
        np.testing.assert_array_equal(hits, [[0, 1]])
        np.testing.assert_array_equal(n_truth, [1])

    def test_hit_matrix_mixed_and_string_ids(self):
        """Lists keep their ids' types; a string truth is one id, not its characters."""
        hits, n_truth = M.hit_matrix([[1, "a"], [2, None]], [[1, "a"], {2}])
        np.testing.assert_array_equal(hits, [[1, 1], [1, 0]])
        np.testing.assert_array_equal(n_truth, [2, 1])
        hits, n_truth = M.hit_matrix(np.array([["ab", "x"]], dtype=object), ["ab"])
        np.testing.assert_array_equal(hits, [[1, 0]])
        np.testing.assert_array_equal(n_truth, [1])

    def test_hit_matrix_checks_shapes(self):
        with pytest.raises(ValueError, match="2-D"):
            M.hit_matrix(np.array([1, 2]), [[1]])
        with pytest.raises(ValueError, match="truth sets"):
            M.hit_matrix(np.array([[1, 2]]), [[1], [2]])

    def test_target_hits_and_first_rank(self):
        rec = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 7]])
        hits = M.target_hits(rec, np.array([3, 0, 7]))
        np.testing.assert_array_equal(M.first_hit_rank(hits), [3, 0, 1])
        np.testing.assert_allclose(M.mrr_from_hits(hits, 3), [1 / 3, 0, 1])
        np.testing.assert_allclose(M.mrr_from_hits(hits, 2), [0, 0, 1])
        np.testing.assert_allclose(M.recall_from_hits(hits, [1, 1, 1], 2), [0, 0, 1])
        with pytest.raises(ValueError):
            M.target_hits(rec, np.array([1, 2]))

    def test_from_hits_hand_case(self):
        hits = np.array([[0, 1, 1, 0], [1, 0, 0, 0]], dtype=bool)
        np.testing.assert_allclose(M.precision_from_hits(hits, 2), [0.5, 0.5])
        np.testing.assert_allclose(M.precision_from_hits(hits, 4), [0.5, 0.25])
        expected = (1 / L2(3) + 1 / L2(4)) / (1 + 1 / L2(3))
        np.testing.assert_allclose(M.ndcg_from_hits(hits, [2, 1], 4), [expected, 1.0])
        np.testing.assert_allclose(M.recall_from_hits(hits, [4, 0], 4), [0.5, 0.0])

    def test_k_beyond_the_list(self):
        # k larger than the number of columns: precision still divides by k, NDCG's ideal
        # still counts min(k, |truth|).
        hits = np.array([[1, 0]], dtype=bool)
        assert M.precision_from_hits(hits, 5)[0] == pytest.approx(0.2)
        assert M.ndcg_from_hits(hits, [3], 5)[0] == pytest.approx(1 / (1 + 1 / L2(3) + 0.5))


ids = st.integers(min_value=0, max_value=12)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.lists(ids, min_size=6, max_size=6, unique=True),
                               st.lists(ids, max_size=8)), min_size=1, max_size=6),
       k=st.integers(min_value=1, max_value=8))
def test_vectorised_equals_scalar(rows, k):
    rec = np.array([r for r, _ in rows])
    truths = [t for _, t in rows]
    hits, n_truth = M.hit_matrix(rec, truths)
    np.testing.assert_allclose(M.precision_from_hits(hits, k),
                               [M.precision_at_k(r, t, k) for r, t in rows])
    np.testing.assert_allclose(M.ndcg_from_hits(hits, n_truth, k),
                               [M.ndcg_at_k(r, t, k) for r, t in rows])
    np.testing.assert_allclose(M.mrr_from_hits(hits, k), [M.mrr_at_k(r, t, k) for r, t in rows])
    np.testing.assert_allclose(M.recall_from_hits(hits, n_truth, k),
                               [M.recall_at_k(r, t, k) for r, t in rows])
    assert all(0.0 <= M.ndcg_at_k(r, t, k) <= 1.0 + 1e-12 for r, t in rows)
