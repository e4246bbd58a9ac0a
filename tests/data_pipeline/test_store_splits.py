"""Splits: stable hashing of group keys, entries of one complex together."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from data_pipeline.build import build_store
from data_pipeline.splits import assign_split, check_fractions, group_key, split_point
from data_pipeline.store import PointCloudStore


def test_group_key_rule():
    assert group_key("1A2K_r_u", "2XYZ") == "1A2K"  # the complex, not the partner's entry
    assert group_key("1a2k_l_b-matched") == "1A2K"
    assert group_key("2r6g-TM_bound") == "2R6G"
    assert group_key("1l2y", "1L2Y") == "1L2Y"
    assert group_key("pdb1ejg", "1EJG") == "1EJG"  # no complex prefix: the entry ID
    assert group_key("mmcif_6yfy", "6YFY") == "6YFY"
    assert group_key("JMJD2DA-x336_event2", None) == "JMJD2DA-x336_event2"


def test_assign_split_is_stable_and_follows_the_fractions():
    keys = [f"{i}ABC" for i in range(20000)]
    first = [assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    assert first == [assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    counts = Counter(first)
    assert abs(counts["train"] / len(keys) - 0.8) < 0.01 and abs(counts["test"] / len(keys) - 0.1) < 0.01
    assert {assign_split(k, (1, 0, 0)) for k in keys[:500]} == {"train"}
    assert {assign_split(k, (0, 0, 1)) for k in keys[:500]} == {"test"}
    # Pinned values: changing the hash would move every existing entry.
    assert split_point("1A2K") == pytest.approx(0.45575612387478)
    assert split_point("4HHB") == pytest.approx(0.09137771546970422)
    assert assign_split("4HHB", (0.05, 0.9, 0.05)) == "val"


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1), (float("nan"), 0.5, 0.5)])
def test_bad_fractions_are_refused(bad):
    with pytest.raises(ValueError, match="split fractions"):
        check_fractions(bad)


def test_adding_entries_never_moves_existing_ones(pdb_dir, tmp_path):
    bm5 = sorted((pdb_dir / "BM5-clean").glob("1A*"))[:20]
    more = sorted((pdb_dir / "BM5-clean").glob("2*"))[:10]
    fractions = (0.5, 0.25, 0.25)
    small = build_store(bm5, tmp_path / "a", workers=1, progress=False, split_fractions=fractions)
    big = build_store(bm5 + more, tmp_path / "b", workers=1, progress=False, split_fractions=fractions)
    assert big.clouds_written > small.clouds_written
    a, b = PointCloudStore(tmp_path / "a"), PointCloudStore(tmp_path / "b")
    split_b = {e["id"]: e["split"] for e in b.entries}
    # Guaranteed while no new cloud links an old component to another one (a shared
    # sequence or entry, see splits.py; none does here: every key is the cloud's own
    # group) and no component is too large for the held-out split it hashes to (none
    # is: BM5's complexes of four files, in a quarter of 20 or 30 clouds).
    assert all(e["split_key"] == e["group"] for e in b.entries)
    assert small.components["oversized"] == big.components["oversized"] == 0
    assert all(split_b[e["id"]] == e["split"] for e in a.entries)
    assert sum(e["split"] != "train" for e in a.entries) >= 4  # held-out clouds stayed held out


def test_chains_and_partners_of_one_complex_land_together(pdb_dir, tmp_path):
    sources = sorted((pdb_dir / "BM5-clean").glob("1A*")) + [pdb_dir / "atomium/1xda.pdb.gz"]
    build_store(sources, tmp_path / "s", workers=1, progress=False, per_chain=True, split_fractions=(0.34, 0.33, 0.33))
    store = PointCloudStore(tmp_path / "s")
    by_group = defaultdict(set)
    for e in store.entries:
        by_group[e["group"]].add(e["split"])
    assert all(len(s) == 1 for s in by_group.values()), by_group
    xda = [e for e in store.entries if e["group"] == "1XDA"]
    assert len(xda) == 8 and {e["chain"] for e in xda} == set("ABCDEFGH")
    assert {e["id"] for e in xda} == {f"1XDA_{c}" for c in "ABCDEFGH"}
    assert len({e["group"] for e in store.entries}) < len(store.entries)  # partners share a group
