"""The PDB pipeline's homology benchmarks run end to end on real files and print their tables."""

from __future__ import annotations

from tests.bench_loader import load_benchmark


def test_bench_homology_at_toy_size(pdb_dir, capsys):
    bench = load_benchmark("bench_homology")
    assert bench.main(["--pdb", str(pdb_dir / "plip"), "--limit", "40", "--subset", "25", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "identity | brute: aligned" in out and "recall" in out
    assert "homology_keys          0.3      30" in out  # the rule-d setting is measured


def test_bench_split_identity_on_the_demo_corpus(pdb_dir, capsys):
    bench = load_benchmark("bench_split_identity")
    assert bench.main(["--pdb", str(pdb_dir), "--identities", "none,0.5", "--workers", "2", "--draws", "10"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if " | " in line]
    assert rows[0].split() == ["identity", "|", "build", "s", "|", "train", "val", "test", "|", "components", "|",
                               "largest", "|", "worst", "val/test", "share:", "hash,", "rule"]
    none, half = (row.split("|") for row in rows[1:])
    assert none[0].strip() == "none" and half[0].strip() == "0.5"
    assert int(half[3]) < int(none[3])  # homology links merge components
    by_hash, by_rule = (float(x.strip(" %")) for x in half[5].split(","))
    assert by_rule <= by_hash and by_rule < 30  # an 18 % component never doubles a held-out split
