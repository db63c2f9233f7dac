"""The k-means cluster index (clusters.py, lsh family `kmeans`): kernels against the NumPy
references in naive.py, and retrieval recall against brute-force top-k on trained-like layers."""

import numpy as np

from slidepy.clusters import assign_rows, auto_clusters, initial_centroids, probe_clusters
from slidepy.configfile import config_from_dict
from slidepy.lsh import INDEX_CLUSTERS, LshIndex
from slidepy.model import lsh_options

from naive import naive_cluster_means, naive_nearest_centroid, naive_probe_clusters


def trained_like_layer(n=3000, d=32, topics=60, seed=0):
    """Rows and queries shaped like a trained output layer and its ReLU inputs: rows share a common
    direction (every label's row learns the shared part of the hidden code), norms spread over a
    factor of ~5 (frequent labels grow), biases tied to norm, and queries that are non-negative,
    mostly active, with a large mean component (ReLU activations). Labels come in topics, as real
    labels do, so some neurons really do fire together."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(d)
    topic_dirs = rng.standard_normal((topics, d))
    topic_of = rng.integers(0, topics, n)
    rows = 0.8 * common + topic_dirs[topic_of] + 0.7 * rng.standard_normal((n, d))
    scale = np.exp(rng.normal(0.0, 0.45, n))
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True) * scale[:, None]).astype(np.float32)
    bias = (0.3 * np.log(scale) + 0.1 * rng.standard_normal(n)).astype(np.float32)
    q_topics = rng.integers(0, topics, 400)
    queries = np.maximum(0.0, 1.0 + 0.6 * topic_dirs[q_topics] + 0.5 * rng.standard_normal((400, d)))
    return rows, bias, queries.astype(np.float32)


def _cfg(**lsh):
    lsh = {"family": "kmeans", **lsh}
    return lsh_options(config_from_dict({"model": {"output": {"selection": {"mode": "lsh", "lsh": lsh}}}})
                       .model.output.selection.lsh)


def _members(index, c):
    return index.cluster_members[index.cluster_indptr[c]:index.cluster_indptr[c + 1]]


def _probe(index, query, forced=(), cap=50, order_len=64):
    ids = np.zeros(cap + len(forced), np.int32)
    stamp = np.zeros(index.n_neurons, np.int32)
    n = 0
    for v in forced:
        if stamp[v] != 1:
            stamp[v] = 1
            ids[n] = v
            n += 1
    scores = np.zeros(index.centroids_t.shape[1], np.float32)
    q_ids = np.arange(query.shape[0], dtype=np.int32)
    order = np.zeros(order_len, np.int32)
    n = probe_clusters(index.centroids_t, index.cluster_indptr, index.cluster_members, q_ids,
                       query.astype(np.float32), query.shape[0], scores, order, stamp, 1, ids, n, cap)
    return list(ids[:n])


def test_probe_matches_naive_reference():
    rows, bias, queries = trained_like_layer(n=600, d=12, topics=10, seed=1)
    index = LshIndex(1, (12, 600), _cfg(clusters=40), seed=2, budget=50)
    index.rebuild(rows, input_major=False, bias=bias)
    centroids = index.centroids_t.T
    members = [list(_members(index, c)) for c in range(index.n_clusters)]
    for i, q in enumerate(queries[:30]):
        q = q.copy()
        q[i % 12] = 0.0  # a zero input coordinate is skipped by the kernel: same result
        forced = [int(i), int(i * 7 % 600), int(i)]  # repeated forced ids are kept once
        expected = naive_probe_clusters(centroids, members, q, forced, 50)
        assert _probe(index, q, forced=forced, cap=50) == expected
        # rounds of 3 clusters (many rounds) and of 1 give the same order as one long round
        assert _probe(index, q, forced=forced, cap=50, order_len=3) == expected
        assert _probe(index, q, forced=forced, cap=50, order_len=1) == expected


def test_probe_with_sparse_query_ids_equals_dense():
    rows, bias, queries = trained_like_layer(n=400, d=10, topics=8, seed=4)
    index = LshIndex(1, (10, 400), _cfg(clusters=20), seed=0, budget=30)
    index.rebuild(rows, input_major=False, bias=bias)
    q = queries[0].copy()
    q[[1, 4, 7]] = 0.0
    nz = np.flatnonzero(q).astype(np.int32)
    scores = np.zeros(20, np.float32)
    stamp = np.zeros(400, np.int32)
    ids = np.zeros(30, np.int32)
    n = probe_clusters(index.centroids_t, index.cluster_indptr, index.cluster_members, nz, q[nz], nz.shape[0],
                       scores, np.zeros(20, np.int32), stamp, 1, ids, 0, 30)
    assert list(ids[:n]) == _probe(index, q, cap=30)


def test_rebuild_clusters_every_row_once_and_centres_on_members():
    rows, bias, _ = trained_like_layer(n=1000, d=16, seed=2)
    index = LshIndex(1, (16, 1000), _cfg(clusters=50, l=2), seed=3, budget=40)
    assert index.kind == INDEX_CLUSTERS and index.l == 2
    index.rebuild(rows, input_major=False, bias=bias)
    for t in range(2):
        block = index.cluster_members[t * 1000:(t + 1) * 1000]
        assert np.array_equal(np.sort(block), np.arange(1000))
        for c in range(t * 50, (t + 1) * 50):
            members = _members(index, c)
            assert np.all(index.codes[members, t] == c - t * 50)
            if members.shape[0]:
                expected = np.append(rows[members].mean(axis=0), bias[members].mean())
                np.testing.assert_allclose(index.centroids_t[:, c], expected, rtol=1e-4, atol=1e-5)
                # members are stored by descending projection on their centroid
                proj = np.hstack([rows[members], bias[members, None]]) @ index.centroids_t[:, c]
                assert np.all(np.diff(proj) <= 1e-4)


def test_assignment_is_the_nearest_centroid():
    rows, bias, _ = trained_like_layer(n=500, d=8, seed=5)
    rng = np.random.default_rng(0)
    centroids = initial_centroids(rows, bias, 25, rng)
    assign = assign_rows(rows, bias, centroids)
    expected = naive_nearest_centroid(rows, bias, centroids)
    aug = np.hstack([rows, bias[:, None]]).astype(np.float64)
    dist = lambda a: ((aug - centroids[a].astype(np.float64)) ** 2).sum(axis=1)
    np.testing.assert_allclose(dist(assign), dist(expected), rtol=1e-4, atol=1e-5)  # ties may differ


def test_refresh_recentres_without_reassigning():
    rows, bias, _ = trained_like_layer(n=800, d=16, seed=6)
    index = LshIndex(1, (16, 800), _cfg(clusters=30), seed=1, budget=40)
    index.rebuild(rows, input_major=False, bias=bias)
    codes = index.codes.copy()
    moved = rows + 0.3 * np.random.default_rng(1).standard_normal(rows.shape).astype(np.float32)
    old = index.centroids_t.T.copy()
    index.refresh(moved, False, bias)
    members = [_members(index, c) for c in range(30)]
    np.testing.assert_allclose(index.centroids_t.T, naive_cluster_means(moved, bias, members, old), rtol=1e-4,
                               atol=1e-5)
    assert np.array_equal(index.codes, codes)


def test_input_major_layer_clusters_its_columns():
    rows, bias, _ = trained_like_layer(n=300, d=12, seed=7)
    a = LshIndex(0, (12, 300), _cfg(clusters=20), seed=5, budget=30)
    b = LshIndex(1, (12, 300), _cfg(clusters=20), seed=5, budget=30)
    a.rebuild(np.ascontiguousarray(rows.T), input_major=True, bias=bias)
    b.rebuild(rows, input_major=False, bias=bias)
    assert np.array_equal(a.cluster_members, b.cluster_members)
    np.testing.assert_array_equal(a.centroids_t, b.centroids_t)


def _recall(index, rows, bias, queries, budget, k=10):
    hits = 0
    for q in queries:
        exact = np.argsort(-(rows @ q + bias))[:k]
        hits += np.intersect1d(exact, _probe(index, q, cap=budget)).shape[0]
    return hits / (k * queries.shape[0])


def test_recall_on_trained_like_layer_beats_sign_bits():
    """The failure this index fixes: on rows with a common direction, spread norms and ReLU
    queries, SRP over the simple-LSH transform returns few of the true top-10 at a 5% budget;
    the cluster index returns nearly all of them at the same budget."""
    rows, bias, queries = trained_like_layer(n=3000, d=32, seed=0)
    budget = 150  # 5% of the layer
    index = LshIndex(1, (32, 3000), _cfg(), seed=0, budget=budget)
    assert index.n_clusters == auto_clusters(3000, budget)
    index.rebuild(rows, input_major=False, bias=bias)
    recall = _recall(index, rows, bias, queries, budget)
    assert recall >= 0.9, recall

    # SRP over the transform on the same layer: the common direction and the slack coordinate
    # crowd the rows into a few buckets, which drop what does not fit.
    srp = LshIndex(1, (32, 3000), _cfg(family="srp", k=8, l=16, range_pow=8, bucket_capacity=64), seed=0)
    srp.rebuild(rows, input_major=False, bias=bias)
    fill = np.mean([(srp.counts[t] > 0).sum() for t in range(srp.l)])
    assert fill < 0.5 * 256, fill  # most of the 256 buckets of a table stay empty


def test_auto_clusters_tracks_budget_and_layer_size():
    assert auto_clusters(22875, 512) == 1024
    assert auto_clusters(50000, 1024) == 2048
    assert auto_clusters(1000, 512) == 125  # at least 8 rows a cluster
    assert auto_clusters(10, 4) == 2


def test_checkpoint_state_round_trips():
    rows, bias, queries = trained_like_layer(n=500, d=12, seed=8)
    a = LshIndex(1, (12, 500), _cfg(clusters=25), seed=1, budget=40)
    a.rebuild(rows, input_major=False, bias=bias)
    b = LshIndex(1, (12, 500), _cfg(clusters=25), seed=9, budget=40)
    b.load_state(a.state_arrays("x"), a.state_meta(), "x")
    for q in queries[:10]:
        assert _probe(a, q, cap=40) == _probe(b, q, cap=40)
    # and the warm start continues from the loaded centroids identically
    a.rebuild(rows * 1.1, input_major=False, bias=bias)
    b.rebuild(rows * 1.1, input_major=False, bias=bias)
    assert np.array_equal(a.cluster_members, b.cluster_members)


def test_fresh_rebuild_after_the_weights_are_replaced():
    """A model loaded without its index (an imported dense model) replaces every weight at once: the
    clusters of the old weights are no warm start, so the engine rebuilds fresh. Measured on an
    imported DebianDeps model: warm-started from clusters of the random initial weights, 834 of
    1,280 clusters stayed empty and LSH inference ran 10x slower; fresh, none."""
    rng = np.random.default_rng(3)
    random_rows = rng.standard_normal((3000, 32)).astype(np.float32) * 0.1
    rows, bias, queries = trained_like_layer(n=3000, d=32, seed=9)
    index = LshIndex(1, (32, 3000), _cfg(), seed=0, budget=150)
    index.rebuild(random_rows, input_major=False)
    index.rebuild(rows, input_major=False, bias=bias, fresh=True)
    sizes = np.diff(index.cluster_indptr)
    assert (sizes == 0).sum() <= 0.02 * sizes.shape[0]
    assert _recall(index, rows, bias, queries, 150) >= 0.9


def _moved_layer(shift: float, seed: int = 11):
    """A layer's rows, 20 centroids, the rows' nearest centroids, and the rows moved by `shift`
    standard deviations of noise since."""
    rows, bias, _ = trained_like_layer(n=600, d=8, seed=seed)
    rng = np.random.default_rng(0)
    centroids = initial_centroids(rows, bias, 20, rng)
    previous = naive_nearest_centroid(rows, bias, centroids).astype(np.int32)
    moved = rows + shift * rng.standard_normal(rows.shape).astype(np.float32)
    return moved, bias, centroids, previous


def test_nearest_centroids_are_those_of_least_distance_self_first():
    """Against the whole float64 distance matrix: each centroid's m nearest, in order of distance,
    itself first (its distance 0)."""
    from slidepy.clusters import nearest_centroids

    rng = np.random.default_rng(4)
    centroids = rng.standard_normal((40, 9)).astype(np.float32)
    c64 = centroids.astype(np.float64)
    dist = ((c64[:, None, :] - c64[None, :, :]) ** 2).sum(axis=2)
    for m in (1, 5, 40, 60):
        got = nearest_centroids(centroids, m)
        want = np.argsort(dist, axis=1, kind="stable")[:, :min(m, 40)]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got[:, 0], np.arange(40))


def _dist(rows, bias, centroids, assign):
    aug = np.hstack([rows, bias[:, None]]).astype(np.float64)
    return ((aug - centroids[assign].astype(np.float64)) ** 2).sum(axis=1)


def test_warm_shortcut_moves_rows_among_neighbouring_centroids_when_a_sample_agrees(monkeypatch):
    """A warm rebuild first assigns each row among the NEIGHBOURS centroids nearest its current
    one; kept when VERIFY_AGREEMENT of the sampled rows agree with the full assignment."""
    import slidepy.clusters as clusters

    moved, bias, centroids, previous = _moved_layer(0.5)
    monkeypatch.setattr(clusters, "NEIGHBOURS", 4)
    monkeypatch.setattr(clusters, "VERIFY_ROWS", 100)
    monkeypatch.setattr(clusters, "VERIFY_AGREEMENT", 0.0)  # any agreement keeps the shortcut
    assign, kept = clusters.assign_warm(moved, bias, centroids, previous, np.random.default_rng(1))
    assert kept
    near = clusters.nearest_centroids(centroids, 4)
    aug = np.hstack([moved, bias[:, None]]).astype(np.float64)
    for i in range(600):  # the nearest of the allowed centroids
        allowed = near[previous[i]]
        dist = ((aug[i] - centroids[allowed].astype(np.float64)) ** 2).sum(axis=1)
        assert assign[i] in allowed
        assert _dist(moved[i:i + 1], bias[i:i + 1], centroids, assign[i:i + 1])[0] <= dist.min() + 1e-4
    # with every centroid a neighbour the shortcut is the full nearest-centroid step
    monkeypatch.setattr(clusters, "NEIGHBOURS", 20)
    monkeypatch.setattr(clusters, "VERIFY_AGREEMENT", 1.0)
    assign_all, kept = clusters.assign_warm(moved, bias, centroids, previous, np.random.default_rng(1))
    ref = naive_nearest_centroid(moved, bias, centroids)
    np.testing.assert_allclose(_dist(moved, bias, centroids, assign_all), _dist(moved, bias, centroids, ref),
                               rtol=1e-4, atol=1e-5)


def test_warm_rebuild_assigns_in_full_when_the_sample_disagrees(monkeypatch):
    """Rows that moved far: the neighbours-only shortcut misses many rows' nearest centroid, the
    sample shows it, and every row gets its nearest centroid of all."""
    import slidepy.clusters as clusters

    moved, bias, centroids, previous = _moved_layer(3.0)
    monkeypatch.setattr(clusters, "NEIGHBOURS", 2)
    monkeypatch.setattr(clusters, "VERIFY_ROWS", 100)
    rng = np.random.default_rng(1)
    half_sq = (0.5 * np.einsum("cd,cd->c", centroids, centroids)).astype(np.float32)
    shortcut = np.empty(600, np.int32)
    clusters.assign_near(moved, bias, centroids, half_sq, clusters.nearest_centroids(centroids, 2), previous, shortcut)
    ref = naive_nearest_centroid(moved, bias, centroids)
    assert np.mean(shortcut == ref) < clusters.VERIFY_AGREEMENT  # the case under test
    assign, kept = clusters.assign_warm(moved, bias, centroids, previous, rng)
    assert not kept
    np.testing.assert_allclose(_dist(moved, bias, centroids, assign), _dist(moved, bias, centroids, ref),
                               rtol=1e-4, atol=1e-5)
    # a layer whose full assignment costs more than FULL_ASSIGN_MACS keeps the shortcut regardless
    monkeypatch.setattr(clusters, "FULL_ASSIGN_MACS", 600 * 20 * 9 - 1)
    assign, kept = clusters.assign_warm(moved, bias, centroids, previous, rng)
    assert kept and np.array_equal(assign, shortcut)


def test_shortcut_agreement_is_the_share_of_sampled_rows_at_their_nearest_centroid(monkeypatch):
    import slidepy.clusters as clusters

    moved, bias, centroids, _ = _moved_layer(1.0)
    ref = naive_nearest_centroid(moved, bias, centroids).astype(np.int32)
    wrong = ref.copy()
    wrong[::4] = (wrong[::4] + 1) % 20  # a quarter of the rows off their nearest centroid
    assert clusters.shortcut_agreement(moved, bias, centroids, ref, np.random.default_rng(0)) == 1.0
    assert clusters.shortcut_agreement(moved, bias, centroids, wrong, np.random.default_rng(0)) == 0.75  # all 600
    monkeypatch.setattr(clusters, "VERIFY_ROWS", 200)
    share = clusters.shortcut_agreement(moved, bias, centroids, wrong, np.random.default_rng(0))
    assert 0.6 < share < 0.9 and share * 200 == int(share * 200)  # a sample of 200 rows


def test_score_centroids_batch_matches_the_reference():
    """The batch product gives each dense query the scores a query gets alone (score_centroids,
    which only compiled code may call): [h, 1] . [w, b] per centroid, to float32 rounding."""
    from slidepy.clusters import score_centroids_batch

    rng = np.random.default_rng(5)
    d, n_c, b = 9, 13, 6
    centroids_t = rng.standard_normal((d + 1, n_c)).astype(np.float32)
    hidden = np.maximum(rng.standard_normal((b, d)), 0).astype(np.float32)  # ReLU zeros included
    got = score_centroids_batch(centroids_t, hidden)
    want = np.hstack([hidden, np.ones((b, 1), np.float32)]).astype(np.float64) @ centroids_t.astype(np.float64)
    assert got.shape == (b, n_c) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_failed_shortcut_backs_off_for_a_few_rebuilds(monkeypatch):
    """After a warm rebuild whose shortcut failed its check, the next SHORTCUT_BACKOFF warm
    rebuilds assign in full without trying it (where rows move far the check keeps failing, and
    each attempt costs a third of a full assignment); then the shortcut is tried again."""
    import slidepy.clusters as clusters

    monkeypatch.setattr(clusters, "VERIFY_ROWS", 100)
    monkeypatch.setattr(clusters, "NEIGHBOURS", 2)
    tried = []
    real = clusters.assign_warm

    def recording(rows, bias, centroids, previous, rng, try_shortcut=True):
        tried.append(try_shortcut)
        return real(rows, bias, centroids, previous, rng, try_shortcut)

    monkeypatch.setattr(clusters, "assign_warm", recording)
    rng = np.random.default_rng(5)
    rows, bias, _ = trained_like_layer(n=600, d=8, seed=4)
    index = LshIndex(1, (8, 600), _cfg(clusters=20), seed=1, budget=40)
    index.rebuild(rows, input_major=False, bias=bias)
    for _ in range(clusters.SHORTCUT_BACKOFF + 2):  # rows that move far: every check fails
        rows = rows + 3.0 * rng.standard_normal(rows.shape).astype(np.float32)
        index.rebuild(rows, input_major=False, bias=bias)
    assert tried == [True] + [False] * clusters.SHORTCUT_BACKOFF + [True]
    # the back-off is checkpoint state: an index resumed mid-back-off goes on with it
    index.rebuild(rows + 3.0 * rng.standard_normal(rows.shape).astype(np.float32), input_major=False, bias=bias)
    assert index.shortcut_backoff == clusters.SHORTCUT_BACKOFF - 1
    resumed = LshIndex(1, (8, 600), _cfg(clusters=20), seed=1, budget=40)
    resumed.load_state(index.state_arrays("x"), index.state_meta(), "x")
    assert resumed.shortcut_backoff == index.shortcut_backoff


def test_assign_warm_without_the_shortcut_assigns_in_full(monkeypatch):
    import slidepy.clusters as clusters

    moved, bias, centroids, previous = _moved_layer(0.5)
    monkeypatch.setattr(clusters, "NEIGHBOURS", 4)
    monkeypatch.setattr(clusters, "VERIFY_ROWS", 100)
    monkeypatch.setattr(clusters, "VERIFY_AGREEMENT", 0.0)  # the shortcut would be kept
    assert clusters.assign_warm(moved, bias, centroids, previous, np.random.default_rng(1))[1]
    assign, kept = clusters.assign_warm(moved, bias, centroids, previous, np.random.default_rng(1), try_shortcut=False)
    assert not kept
    np.testing.assert_allclose(_dist(moved, bias, centroids, assign),
                               _dist(moved, bias, centroids, naive_nearest_centroid(moved, bias, centroids)),
                               rtol=1e-4, atol=1e-5)
    # a layer too large for a full assignment takes the shortcut all the same
    monkeypatch.setattr(clusters, "FULL_ASSIGN_MACS", 600 * 20 * 9 - 1)
    assign, kept = clusters.assign_warm(moved, bias, centroids, previous, np.random.default_rng(1), try_shortcut=False)
    assert kept
