"""deduplicate(): exact then near, survivors and drop reasons."""

import numpy as np

from refinery.tasks.dedup import REASON_EXACT, REASON_NEAR, DedupConfig, deduplicate, exact_keys, signatures


def words(n: int, seed: int) -> list[str]:
    return [f"w{v}" for v in np.random.default_rng(seed).choice(10**9, size=n, replace=False)]


def corpus() -> list[str]:
    a = words(300, 1)
    b = words(300, 2)
    a_near = a[:150] + ["changed"] + a[151:]  # J ~ 0.97 with a
    return [
        " ".join(a),  # 0
        " ".join(b),  # 1
        " ".join(a).upper(),  # 2: exact copy of 0
        " ".join(a_near) + " tail",  # 3: near copy of 0, longest of its cluster
        "",  # 4
        "",  # 5: exact copy of 4
        "  " + " ".join(a_near) + " tail",  # 6: exact copy of 3 (whitespace), longer by 2 chars
    ]


def run(cfg: DedupConfig):
    texts = corpus()
    lengths = np.array([len(t) for t in texts])
    return deduplicate(exact_keys(texts), signatures(texts, cfg), lengths, cfg)


def test_exact_and_near_merge_into_one_cluster_with_one_survivor() -> None:
    result = run(DedupConfig())
    assert result.exact_labels.tolist() == [0, 1, 0, 3, 4, 4, 3]
    assert result.labels.tolist() == [0, 1, 0, 0, 4, 4, 0]
    assert result.keep.tolist() == [False, True, False, False, True, False, True]
    # 6 survives (longest); 3 shares its normalized text, 0 and 2 are near copies of it.
    assert result.reasons.tolist() == [REASON_NEAR, "", REASON_NEAR, REASON_EXACT, "", REASON_EXACT, ""]
    stats = result.stats()
    assert stats["docs"] == 7 and stats["kept"] == 3
    assert stats["dropped_dedup_exact"] == 2 and stats["dropped_dedup_near"] == 2
    assert stats["duplicate_clusters"] == 2 and stats["largest_cluster"] == 4
    assert stats["lsh_bands"] * stats["lsh_rows"] <= 128


def test_switching_stages_off() -> None:
    exact_only = run(DedupConfig(near=False))
    assert exact_only.labels.tolist() == [0, 1, 0, 3, 4, 4, 3]
    assert exact_only.lsh is None
    near_only = run(DedupConfig(exact=False))
    assert near_only.labels.tolist() == [0, 1, 0, 0, 4, 5, 0]  # empty docs never near-match
    first = run(DedupConfig(survivor="first"))
    assert first.keep.tolist() == [True, True, False, False, True, False, False]
