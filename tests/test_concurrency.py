"""Many Python threads on one model: no crash, no torn state, no lost event."""
from __future__ import annotations

import threading

import numpy as np

import hrnn
from conftest import planted_log

FAST = dict(hidden_dimension=32, n_sample=32, batch_size=16, bptt=8, show_progress=False, epochs=1)


def test_threads_recommend_and_put_events_lose_nothing():
    users, items, ts = planted_log(n_users=50)
    m = hrnn.HRNN(random_state=0, num_threads=2, **FAST).fit((users, items, ts))
    replay = hrnn.HRNN(random_state=0, num_threads=2, **FAST).fit((users, items, ts))
    t0 = ts.max() + 1
    n_threads, n_events = 8, 150
    errors = []

    def work(k):
        try:
            user = f"thread-{k}"
            for j in range(n_events):
                m.put_events(user, [int((k + j) % 60)], [t0 + j])
                ids, scores = m.recommend(user, 5)
                assert len(ids) == 5 and np.isfinite(scores).all()
                if j % 25 == 0:
                    m.recommend_batch([0, 1, user], 10)
                    m.put_events(k, [j % 60], [t0 + 1000 * k + j])  # shared training users too
        except Exception as e:  # reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(n_threads):
        user = f"thread-{k}"
        replay.put_events(user, [int((k + j) % 60) for j in range(n_events)],
                          [t0 + j for j in range(n_events)])
        np.testing.assert_allclose(m.user_state(user)[1], replay.user_state(user)[1], rtol=1e-5, atol=1e-6)
        replay.put_events(k, [j % 60 for j in range(0, n_events, 25)],
                          [t0 + 1000 * k + j for j in range(0, n_events, 25)])
        np.testing.assert_allclose(m.user_state(k)[1], replay.user_state(k)[1], rtol=1e-5, atol=1e-6)
