"""Splits per connected component: clouds sharing a group key, an exact residue sequence
or an entry ID share a split (no identical structure on both sides of a split)."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline import build
from data_pipeline.build import StoreConfigMismatch, build_store
from data_pipeline.splits import (
    MIN_LINK_RESIDUES,
    SPLIT_NAMES,
    assign_split,
    chain_sequences,
    component_keys,
    component_splits,
    component_summary,
    entry_link,
    largest_split,
    oversized_components,
    residue_sequence,
    sequence_key,
)
from data_pipeline.store import PointCloudStore
from data_pipeline.store_writer import CloudRecord, StoreWriter

SEQ_A = "MKTAYIAKQRQISFVKSHFSRQ"
SEQ_B = "GSHMLEDPVDAFQLGNTLVQK"
SEQ_C = "KVFGRCELAAAMKRHGLDNYRG"


def key(seq: str) -> str:
    k = sequence_key(seq)
    assert k is not None
    return k


def test_two_complexes_sharing_a_partner_sequence_land_together():
    assert assign_split("1CCC") != assign_split("1DDD")  # apart by group key alone
    singles = [f"9S{i:02d}" for i in range(40)]  # a corpus in which 4 clouds are not too many for a split
    groups = ["1CCC", "1CCC", "1DDD", "1DDD", "1EEE", *singles]
    seqs = [key(SEQ_A), key(SEQ_B), key(SEQ_C), key(SEQ_A), key(SEQ_A + "W")] + [None] * 40  # 1DDD's ligand = 1CCC's
    splits, keys = component_splits(groups, seqs)
    assert keys == ["1CCC", "1CCC", "1CCC", "1CCC", "1EEE", *singles]
    assert splits[:4] == [assign_split("1CCC")] * 4 and splits[4] == assign_split("1EEE")


def test_links_merge_transitively_and_entry_ids_link():
    # 1ZZZ -seq-> 1YYY -seq-> 1XXX -entry-> 2XYZ (a file named 2XYZ_r_u whose own header
    # says 1XXX); 1WWW stands alone.
    groups = ["1ZZZ", "1YYY", "1YYY", "1XXX", "2XYZ", "1WWW"]
    seqs = [key(SEQ_A), key(SEQ_A), key(SEQ_B), key(SEQ_B), key(SEQ_C), None]
    entries = [None, None, None, None, entry_link("1xxx"), None]
    assert component_keys(groups, seqs, entries) == ["1XXX"] * 5 + ["1WWW"]
    # Two files of one entry under unrelated names share a split through the entry ID.
    assert component_keys(["FOO_A", "BAR_B"], None, ["4HHB", "4HHB"]) == ["BAR_B", "BAR_B"]
    assert entry_link("1A2K_r_u") is None and entry_link("0ABC") is None and entry_link(None) is None


def test_empty_short_and_unknown_sequences_link_nothing():
    short = "ACDEFGHIK"[: MIN_LINK_RESIDUES - 1]
    for seq in ("", "X" * 200, short, "X" * 50 + short):
        assert sequence_key(seq) is None, seq
    assert sequence_key("ACDEFGHIKL"[:MIN_LINK_RESIDUES]) is not None
    # Clouds whose only shared "sequence" is empty/unknown/short stay apart.
    groups = ["1CCC", "1DDD", "1EEE"]
    seqs = [sequence_key("X" * 300), sequence_key("X" * 300), sequence_key("")]
    assert component_keys(groups, seqs) == groups
    # From parsed arrays: UNK residues, waters and ligands give no linkable sequence.
    names = np.array(["UNK"] * 30 + ["HOH"] * 5 + ["NAG"] * 3)
    n = len(names)
    seq = residue_sequence(np.array(["A"] * n), np.arange(n, dtype=np.int32), np.array([""] * n), names)
    assert seq == "X" * 30 and sequence_key(seq) is None


def test_residue_sequence_one_letter_per_residue_in_chain_order():
    # heavy-atom style: several points per residue; chain B listed before chain A.
    chain = np.array(["B", "B", "B", "A", "A", "B", "A"])
    res_seq = np.array([1, 1, 2, 5, 5, 3, 6], dtype=np.int32)
    icode = np.array([""] * 7)
    res_name = np.array(["MSE", "MSE", "GLY", "TRP", "TRP", "ALA", "HOH"])
    assert residue_sequence(chain, res_seq, icode, res_name) == "MGAW"
    assert residue_sequence(chain[:0], res_seq[:0], icode[:0], res_name[:0]) == ""


def test_components_do_not_depend_on_input_order_and_keep_unlinked_keys():
    rng = random.Random(0)
    clouds = [(f"{rng.randrange(1, 10)}{rng.choice('ABCDE')}{rng.randrange(10)}Q",
               key(rng.choice([SEQ_A, SEQ_B, SEQ_C]) + "W" * rng.randrange(25)) if rng.random() < 0.5 else None,
               rng.choice([None, None, None, "1ABC", "2DEF"])) for _ in range(300)]  # fmt: skip
    expected = dict(zip(range(300), component_keys(*map(list, zip(*clouds)))))
    for _ in range(5):
        order = list(range(300))
        rng.shuffle(order)
        got = component_keys(*map(list, zip(*(clouds[i] for i in order))))
        assert {i: k for i, k in zip(order, got)} == expected
    assert len(set(expected.values())) < len({c[0] for c in clouds})  # some merged
    # Nothing links: every cloud keeps its own group key (and so the old split).
    groups = [c[0] for c in clouds]
    assert component_keys(groups, [None] * 300, [None] * 300) == groups


def test_writer_set_splits_rewrites_entries_before_commit(tmp_path):
    with StoreWriter(tmp_path / "s") as writer:
        for i in range(3):
            writer.add(CloudRecord(f"c{i}", np.zeros((4, 3)), np.zeros(4, np.uint8), {"group": "1AAA"}))
        writer.set_splits(["test", "val", "test"], [{"split_key": "k"}] * 3)
        with pytest.raises(ValueError):
            writer.set_splits(["test"])
        writer.commit({})
    store = PointCloudStore(tmp_path / "s", verify=True)
    assert [e["split"] for e in store.entries] == ["test", "val", "test"]
    assert {e["split_key"] for e in store.entries} == {"k"}
    assert store.split("test").tolist() == [0, 2] and store.meta["counts"]["splits"]["val"] == 1


TWINS = [("1MLC_l_u", "1DQJ_l_u"), ("4G6M_l_u", "4G6J_l_u")]  # same unbound entry (BM5)


def test_known_bm5_twins_share_a_split_after_a_build(pdb_dir, tmp_path):
    folder = pdb_dir / "BM5-clean"
    complexes = sorted({name[:4] for pair in TWINS for name in pair})
    sources = sorted(p for c in complexes for p in folder.glob(f"{c}_*.pdb.gz"))
    assert len(sources) == 4 * len(complexes)
    for a, b in TWINS:  # the old rule (group key alone) puts each pair apart
        assert assign_split(a[:4]) != assign_split(b[:4])
    build_store(sources, tmp_path / "s", workers=1, progress=False)
    store = PointCloudStore(tmp_path / "s", verify=True)
    entry = {e["id"]: e for e in store.entries}
    for a, b in TWINS:
        assert entry[a]["sequence_sha256"] == entry[b]["sequence_sha256"] is not None
        assert entry[a]["split"] == entry[b]["split"], (a, b)
        assert entry[a]["split_key"] == entry[b]["split_key"] == min(a[:4], b[:4])
    by_group = defaultdict(set)
    for e in store.entries:  # whole complexes move together
        by_group[e["group"]].add(e["split"])
    assert all(len(s) == 1 for s in by_group.values())
    codes = {e["id"]: store.meta["split_names"][c] for e, c in zip(store.entries, store._splits.tolist())}
    assert codes == {i: e["split"] for i, e in entry.items()}  # splits.npy agrees with entries


def test_a_store_of_the_old_split_rule_is_not_up_to_date(pdb_dir, tmp_path, monkeypatch):
    sources = sorted((pdb_dir / "BM5-clean").glob("1MLC_*"))
    with monkeypatch.context() as m:
        m.setattr(build, "SPLIT_RULE_VERSION", 1)
        build_store(sources, tmp_path / "s", workers=1, progress=False)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["config"]["split_rule"] == 1
    with pytest.raises(StoreConfigMismatch, match="split_rule"):
        build_store(sources, tmp_path / "s", workers=1, progress=False)
    again = build_store(sources, tmp_path / "s", workers=1, progress=False, overwrite=True)
    assert again.status == "built"


def test_the_homology_rule_enters_only_stores_built_with_split_identity(pdb_dir, tmp_path, monkeypatch):
    """A change of the homology link rebuilds the stores it splits, and no other."""
    sources = sorted((pdb_dir / "BM5-clean").glob("1MLC_*"))
    build_store(sources, tmp_path / "plain", workers=1, progress=False)
    plain = json.loads((tmp_path / "plain" / "meta.json").read_text())["config"]
    assert "homology_rule" not in plain and "split_identity" not in plain
    with monkeypatch.context() as m:
        m.setattr(build, "HOMOLOGY_RULE_VERSION", 1)
        build_store(sources, tmp_path / "homology", workers=1, progress=False, split_identity=0.3)
        assert build_store(sources, tmp_path / "plain", workers=1, progress=False).status == "up-to-date"
    meta = json.loads((tmp_path / "homology" / "meta.json").read_text())
    assert meta["config"]["homology_rule"] == 1 and meta["config"]["split_identity"] == 0.3
    with pytest.raises(StoreConfigMismatch, match="homology_rule"):
        build_store(sources, tmp_path / "homology", workers=1, progress=False, split_identity=0.3)
    assert build_store(sources, tmp_path / "plain", workers=1, progress=False).status == "up-to-date"


# -- rule d: homology clusters of chains ---------------------------------------------


def test_clouds_sharing_a_chain_cluster_share_a_component():
    groups = ["1CCC", "1DDD", "1EEE", "1FFF"]
    clusters = [["h1"], ["h2", "h1"], ["h2"], []]  # 1DDD's chains bridge two clusters
    assert component_keys(groups, clusters=clusters) == ["1CCC", "1CCC", "1CCC", "1FFF"]
    assert component_keys(groups, clusters=[[]] * 4) == groups  # no clusters: unchanged
    with pytest.raises(ValueError, match="3 clusters"):
        component_keys(groups, clusters=[[]] * 3)


HOMOLOGUES = ("plip/1hii.pdb.gz", "plip/1hvi.pdb.gz")  # HIV-2 and HIV-1 protease: 48% identical


def test_a_build_with_split_identity_keeps_homologues_together(pdb_dir, tmp_path):
    from data_pipeline.homology import identity

    sources = [pdb_dir / name for name in HOMOLOGUES] + [pdb_dir / "biopython/1A8O.cif.gz"]
    assert assign_split("1HII") != assign_split("1HVI")  # apart without rule d
    plain = build_store(sources, tmp_path / "plain", workers=1, progress=False)
    entries = {e["id"]: e for e in PointCloudStore(plain.out).entries}
    assert entries["1HII"]["split_key"] == "1HII" and entries["1HVI"]["split_key"] == "1HVI"
    assert entries["1HII"]["sequence_sha256"] != entries["1HVI"]["sequence_sha256"]

    report = build_store(sources, tmp_path / "h40", split_identity=0.4, workers=1, progress=False)
    store = PointCloudStore(report.out, verify=True)
    entries = {e["id"]: e for e in store.entries}
    assert entries["1HII"]["split_key"] == entries["1HVI"]["split_key"] == "1HII"
    assert entries["1HII"]["split"] == entries["1HVI"]["split"] == assign_split("1HII")
    assert entries["1A8O"]["split_key"] == "1A8O"  # unrelated: still alone
    assert report.components == {"count": 2, "largest": 2, "largest_key": "1HII", "oversized": 0, "oversized_clouds": 0}
    assert plain.components == {"count": 3, "largest": 1, "largest_key": "1A8O", "oversized": 0, "oversized_clouds": 0}
    assert "split components  2, largest 2 clouds (67%, 1HII)" in report.summary()
    assert store.meta["config"]["split_identity"] == 0.4 and "split_identity" not in PointCloudStore(plain.out).meta["config"]
    assert not any("chain_sequences" in e for e in store.entries)  # used for the split, not stored
    # 0.5 is above their identity: apart again.
    strict = build_store(sources, tmp_path / "h50", split_identity=0.5, workers=1, progress=False)
    assert {e["id"]: e["split_key"] for e in PointCloudStore(strict.out).entries}["1HVI"] == "1HVI"
    assert 0.4 <= identity(*(_protein_sequence(pdb_dir / n) for n in HOMOLOGUES)) < 0.5

    again = build_store(sources, report.out, split_identity=0.4, workers=1, progress=False)
    assert again.status == "up-to-date" and again.components == report.components
    for other in (0.3, None):  # another identity, or none: the mismatch names the key
        with pytest.raises(StoreConfigMismatch, match=r"split_identity \(store: 0.4, requested: "):
            build_store(sources, report.out, split_identity=other, workers=1, progress=False)
    for bad in (1.5, 0, True, "0.3"):
        with pytest.raises(ValueError, match="split_identity"):
            build_store(sources, tmp_path / "bad", split_identity=bad, workers=1, progress=False)
    exact = build_store(sources, tmp_path / "h100", split_identity=1, workers=1, progress=False)
    assert PointCloudStore(exact.out).meta["config"]["split_identity"] == 1.0  # 1 and 1.0: one configuration
    assert build_store(sources, exact.out, split_identity=np.float32(1.0), workers=1, progress=False).status == "up-to-date"


def _protein_sequence(path) -> str:
    from data_pipeline.parse import read_structure

    cloud = read_structure(path, selection="ca")
    return chain_sequences(cloud)[cloud.chains()[0]]


_sizes = st.lists(st.integers(1, 60), min_size=1, max_size=40)
_fractions = st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.34, 0.33, 0.33), (0.2, 0.7, 0.1), (1, 0, 0)])


@settings(max_examples=200, deadline=None)
@given(_sizes, _fractions, st.integers(0, 10_000))
def test_no_held_out_split_takes_a_component_larger_than_its_target(sizes, fractions, salt):
    groups = [f"K{salt}-{i}" for i, size in enumerate(sizes) for _ in range(size)]  # component i: `size` clouds
    splits, keys = component_splits(groups, fractions=fractions)
    n, largest = len(groups), largest_split(fractions)
    oversized = oversized_components(keys, fractions)
    summary = component_summary(keys, fractions)
    assert summary["oversized"] == len(oversized) and summary["oversized_clouds"] == sum(
        keys.count(k) for k in oversized)
    for component, size in Counter(keys).items():
        split = splits[keys.index(component)]
        hashed = assign_split(component, fractions)
        if component in oversized:  # moved, and only because it was too large for its split
            assert split == largest != hashed and size > 1
            assert size > fractions[SPLIT_NAMES.index(hashed)] * n
        else:  # its own split: the largest one, or one it does not overfill, or it is one cloud
            assert split == hashed
            assert split == largest or size == 1 or size <= fractions[SPLIT_NAMES.index(split)] * n


def test_a_third_of_the_corpus_in_one_component_goes_to_train_not_test():
    giant = next(f"G{i}" for i in range(1000) if assign_split(f"G{i}") == "test")  # hashes to test
    groups = [giant] * 35 + [f"S{i:03d}" for i in range(65)]  # 35 % of 100 clouds, test's target 10
    splits, keys = component_splits(groups)
    assert set(splits[:35]) == {"train"} and splits[35:] == [assign_split(g) for g in groups[35:]]
    assert component_summary(keys) == {"count": 66, "largest": 35, "largest_key": giant, "oversized": 1,
                                       "oversized_clouds": 35}
    # 10 clouds, test's whole target, are not too many
    splits, _ = component_splits([giant] * 10 + [f"S{i:03d}" for i in range(90)])
    assert set(splits[:10]) == {"test"}


def test_the_build_summary_says_how_many_components_went_to_train(tmp_path):
    from data_pipeline.build_report import BuildReport

    components = {"count": 66, "largest": 35, "largest_key": "G7", "oversized": 1, "oversized_clouds": 35}
    report = BuildReport(tmp_path, "built", 100, 100, 5000, {"train": 90, "val": 5, "test": 5}, [], 1.0, "0" * 64,
                         components)
    assert ("split components  66, largest 35 clouds (35%, G7); 1 too large for the held-out split they hash "
            "to went to the largest split (35 clouds)") in report.summary()
