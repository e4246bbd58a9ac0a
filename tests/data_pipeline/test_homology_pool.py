"""The homology search in worker processes (data_pipeline.homology, ``workers``;
data_pipeline.homology_pool): the same candidates, pairs and keys as in one process."""

from __future__ import annotations

import operator
import os
import re
import time
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline import homology, homology_pool
from data_pipeline.build import build_store
from data_pipeline.homology import MIN_IDENTICAL, candidate_pairs, homologous_pairs, homology_keys
from data_pipeline.homology_pool import Clusters, align_candidates, ordered_map
from data_pipeline.store import PointCloudStore
from tests.bench_loader import load_benchmark
from tests.data_pipeline.test_homology import chain_family, random_protein, substitute
from tests.data_pipeline.test_homology_short import mixed_corpus, mutate, natural


def families(seed: int) -> list[str]:
    """Planted families (a chain of partial homologues, substitution mutants of one
    protein), copies, unrelated proteins, short chains and their mutants."""
    rng = np.random.default_rng(seed)
    a, b, c, d = chain_family(seed)
    base = random_protein(rng, 180)
    short = [natural(rng, int(rng.integers(30, 40))) for _ in range(4)]
    return [a, b, c, d, a, *(substitute(rng, base, f) for f in (0.1, 0.3, 0.5, 0.6)), base,
            *(random_protein(rng, int(rng.integers(60, 300))) for _ in range(8)),
            *short, *(mutate(rng, s, 0.25) for s in short)]  # fmt: skip


def low_complexity(seed: int) -> list[str]:
    """Poly-Q tails (masked from the band test), a real homologue of one, poly-Ala traces."""
    rng = np.random.default_rng(seed)
    a, b = random_protein(rng, 100) + "Q" * 60, random_protein(rng, 100) + "Q" * 60
    return [a, b, substitute(rng, a[:100], 0.3) + "Q" * 60, *("A" * 300 + random_protein(rng, 20) for _ in range(6)),
            "Q" * 35, "QQQQAQQQQQAQQQQQQQAQQQQQQQQAQQQQQ", *(random_protein(rng, 150) for _ in range(4))]  # fmt: skip


CORPORA = {"families": families, "short and X-rich": mixed_corpus, "low complexity": low_complexity}


def assert_same_at_workers(seqs: list[str], min_identity: float, **kw) -> None:
    def results(workers: int) -> tuple:
        return (candidate_pairs(seqs, min_identity, workers=workers, **kw).tolist(),
                homologous_pairs(seqs, min_identity, workers=workers, **kw),
                homology_keys(seqs, min_identity, workers=workers, **kw))  # fmt: skip

    one, two = results(1), results(2)
    assert two[0] == one[0]  # the same candidates in the same order
    assert two[1] == one[1]  # all the pairs
    assert two[2] == one[2]  # the keys


@pytest.fixture
def small_tasks(monkeypatch):
    """Many tasks from small inputs: a few exhaustive pairs per block, alignment tasks
    down to one pair, the band test cut into many blocks of hits."""
    monkeypatch.setattr(homology, "_BLOCK_PAIRS", 40)
    monkeypatch.setattr(homology, "_BLOCK_HITS", 64)
    monkeypatch.setattr(homology_pool, "MIN_BATCH", 1)


@pytest.mark.parametrize("corpus", CORPORA)
@pytest.mark.parametrize("seed", [0, 1])
def test_two_workers_give_the_one_process_candidates_pairs_and_keys(corpus: str, seed: int, small_tasks) -> None:
    seqs = CORPORA[corpus](seed)
    assert any(len(s) < homology.EXHAUSTIVE_BELOW for s in seqs)  # the exhaustive path is taken
    for min_identity, kw in ((0.3, {"min_residues": 10}), (0.3, {"min_residues": 30, "min_identical": 0}),
                             (0.5, {"min_residues": 30})):  # fmt: skip
        assert_same_at_workers(seqs, min_identity, **kw)
    assert len(set(homology_keys(seqs, 0.3, min_residues=10, workers=2))) < len(set(seqs))  # something links


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_families=st.integers(1, 4), size=st.integers(2, 6),
       fraction=st.floats(0.0, 0.6), workers=st.integers(2, 3))  # fmt: skip
def test_any_number_of_workers_gives_the_same_keys_and_pairs(
    seed: int, n_families: int, size: int, fraction: float, workers: int
) -> None:
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_families):  # long or short ancestors and their mutants
        base = natural(rng, int(rng.integers(30, 40)) if rng.random() < 0.3 else int(rng.integers(60, 250)))
        seqs += [base, *(mutate(rng, base, fraction * rng.random()) for _ in range(size - 1))]
    seqs += [natural(rng, int(rng.integers(30, 200))) for _ in range(4)]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(homology_pool, "MIN_BATCH", 1)
        for fn in (homologous_pairs, homology_keys):
            assert fn(seqs, 0.3, min_residues=30, workers=workers) == fn(seqs, 0.3, min_residues=30)


def test_spawned_workers_give_the_same_keys(monkeypatch) -> None:
    # Spawn (the default of macOS and Windows) pickles the workers' state: it must
    # work with module-level functions alone.
    monkeypatch.setattr(homology_pool, "START_METHOD", "spawn")
    seqs = families(2)
    assert homology_keys(seqs, 0.3, min_residues=10, workers=2) == homology_keys(seqs, 0.3, min_residues=10)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_bad_workers_name_the_argument(bad: object) -> None:
    for fn in (candidate_pairs, homologous_pairs, homology_keys):
        with pytest.raises(ValueError, match=r"^workers must be an int >= 1, got "):
            fn(["ACDEFGHIKL"], 0.5, workers=bad)


def test_one_worker_runs_in_this_process(monkeypatch) -> None:
    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for workers=1")

    monkeypatch.setattr(homology_pool, "ProcessPoolExecutor", no_pool)
    a, b, c, d = chain_family(3)
    assert homologous_pairs([a, b, c, d], 0.45) == [(0, 1), (1, 2)]
    with pytest.raises(AssertionError, match="a pool was started"):  # the check can fail
        homologous_pairs([a, b, c, d], 0.45, workers=2)


def test_homology_keys_in_workers_skip_pairs_already_joined(monkeypatch) -> None:
    rng = np.random.default_rng(4)
    base = natural(rng, 200)
    seqs = [mutate(rng, base, 0.2) for _ in range(40)]  # 780 pairs, all linked: 39 links suffice
    sent = []

    def counting(fn, items, *args):
        for item, result in ordered_map(fn, items, *args):
            sent.append(len(item) if fn is homology_pool._judge else 0)
            yield item, result

    monkeypatch.setattr(homology_pool, "ordered_map", counting)
    assert len(set(homology_keys(seqs, 0.3, workers=2))) == 1
    aligned = sum(sent)
    sent.clear()
    assert len(homologous_pairs(seqs, 0.3, workers=2)) == len(candidate_pairs(seqs, 0.3)) == sum(sent) == 780
    assert aligned < 780 // 4  # only the batches sent before the clusters merged


def test_progress_bars_count_everything_with_workers(capsys) -> None:
    homology_keys(families(5), 0.3, min_residues=10, workers=2, progress=True)
    err = capsys.readouterr().err
    assert "k-mer hits" in err
    done = re.findall(r"aligning: 100%\|[^|]*\| (\d+)/(\d+)", err)
    assert done and done[-1][0] == done[-1][1]  # every candidate counted, aligned or skipped


def test_ordered_map_keeps_the_order_and_few_tasks_in_flight() -> None:
    pulled = []

    def items():
        for x in range(50):
            pulled.append(x)
            yield x

    out = []
    for x, y in ordered_map(operator.mul, items(), 2, int, (3,)):  # state: int(3); fn(3, x)
        out.append((x, y))
        assert len(pulled) <= len(out) + homology_pool.IN_FLIGHT * 2  # bounded read-ahead
    assert out == [(x, 3 * x) for x in range(50)]
    assert list(ordered_map(operator.mul, [], 2, int, (3,))) == []  # no item: no pool


def test_a_worker_that_dies_fails_the_search_with_a_clear_error() -> None:
    dies = partial(os._exit, 3)  # the workers' make_aligner: they exit, as if killed for memory
    link = partial(homology._linked, min_identity=0.3, min_identical=MIN_IDENTICAL)
    with pytest.raises(RuntimeError, match="worker process died"):
        align_candidates(np.array([[0, 1]]), [], ["A" * 30] * 2, link, dies, True, 2, False)


def _dies_on_two(_state: None, k: int) -> int:
    if k == 2:
        time.sleep(0.2)
        os._exit(1)  # as if killed for memory, while the consumer is busy
    return k


def test_a_worker_that_dies_mid_search_fails_it_with_the_clear_error_too() -> None:
    """The death shows at the next submission, not only at a result: the same error."""
    got = []
    with pytest.raises(RuntimeError, match="worker process died"):
        for item, result in ordered_map(_dies_on_two, range(10), 2, type(None), ()):
            got.append(result)
            time.sleep(1.0)  # a slow consumer: the pool breaks before the next submit
    assert got in ([0], [0, 1])  # results before the death, in order (1 may be lost with the pool)


def test_clusters_name_each_cluster_by_its_smallest_member() -> None:
    clusters = Clusters(6)
    for i, j in ((4, 5), (2, 5), (1, 3), (3, 2)):
        clusters.union(i, j)
    assert clusters.roots.tolist() == [0, 1, 1, 1, 1, 1]
    assert clusters.joined(3, 5) and not clusters.joined(0, 5)
    assert clusters.apart(np.array([[0, 1], [2, 4]])).tolist() == [True, False]


def test_a_build_with_split_identity_is_the_same_with_two_workers(pdb_dir, tmp_path) -> None:
    # HIV-1 and HIV-2 protease (48% identical) plus an unrelated protein: the homology
    # search runs in the build's worker processes.
    sources = [pdb_dir / "plip/1hii.pdb.gz", pdb_dir / "plip/1hvi.pdb.gz", pdb_dir / "biopython/1A8O.cif.gz"]
    stores = [PointCloudStore(build_store(sources, tmp_path / f"w{w}", split_identity=0.4, workers=w,
                                          progress=False).out) for w in (1, 2)]  # fmt: skip
    one, two = ({e["id"]: (e["split"], e["split_key"]) for e in s.entries} for s in stores)
    assert one == two and one["1HII"] == one["1HVI"]


def test_bench_homology_times_the_workers_side_by_side(pdb_dir, capsys) -> None:
    bench = load_benchmark("bench_homology")
    assert bench.main(["--pdb", str(pdb_dir / "plip"), "--limit", "20", "--workers", "2", "--random", "60"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.count("|") == 2]
    assert rows[0][1].split() == ["workers=1", "s", "workers=2", "s", "ratio"]
    assert [r[0].split()[-1] for r in rows[1:]] == ["homology_keys", "homologous_pairs"] * 2 + ["candidate_pairs"]
