"""``python -m common.aggregate readmes``: one scale's blocks only, quick never inlined in tracked READMEs,
files rewritten only when their text changes, the bench block only when its section is passed."""
import argparse
import os
from pathlib import Path

from common.aggregate.cli import parser, readmes

BLOCKS = ("<!-- BEGIN generated:{0} -->\nold {0}\n<!-- END generated:{0} -->\n")


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "papers" / "p").mkdir(parents=True)
    (root / "papers" / "p" / "README.md").write_text("# p\n" + BLOCKS.format("quick") + BLOCKS.format("cpu"))
    (root / "README.md").write_text("# top\n" + "".join(BLOCKS.format(t) for t in (
        "results-quick", "results-cpu", "bench")))
    res = tmp_path / "results"
    for scale in ("quick", "cpu"):
        (res / scale / "tables").mkdir(parents=True)
        (res / scale / "tables" / "p.md").write_text(f"new table {scale}\n")
        (res / scale / "summary.md").write_text(f"# title\n\nnew summary {scale}\n")
        (res / scale / "matrix.md").write_text(f"# title\n\nnew matrix {scale}\n")
        (res / scale / "summary.csv").write_text(
            "paper,claim,outcome,verdict\n"
            f"p,c1_{scale},reproduced,reproduced\n"
            f"p,c2_{scale},inconclusive,\"inconclusive — underpowered: detects >= 3.0 points, paper effect 1.0\"\n")
    (tmp_path / "bench.md").write_text("new bench\n")
    return root


def _args(tmp_path, scale, *extra) -> argparse.Namespace:
    res = tmp_path / "results" / scale
    return parser().parse_args(["readmes", "--scale", scale, str(res / "tables" / "p.md"), "--summary-md",
                                str(res / "summary.md"), "--matrix-md", str(res / "matrix.md"), *extra])


def test_cpu_writes_its_blocks_only(tmp_path):
    root = _tree(tmp_path)
    readmes(_args(tmp_path, "cpu"), root)
    paper = (root / "papers/p/README.md").read_text()
    top = (root / "README.md").read_text()
    assert "new table cpu" in paper and "old quick" in paper
    # the top README gets the compact view: verdict counts per paper (underpowered ones counted), links
    assert "**2 claims** at `cpu` scale: 1 reproduced, 0 not reproduced at this scale, 1 inconclusive (1 of them" in top
    assert "| [p](papers/p) | 2 | 1 | 0 | 1 (1) |" in top and "results/cpu/summary.md" in top
    assert "old results-quick" in top
    assert "old bench" in top  # not passed: not written
    readmes(_args(tmp_path, "cpu", "--bench-section", str(tmp_path / "bench.md")), root)
    assert "new bench" in (root / "README.md").read_text()


def test_quick_never_writes_tracked_readmes(tmp_path):
    root = _tree(tmp_path)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("README.md")}
    stamp = tmp_path / "results/quick/readmes.done"
    readmes(_args(tmp_path, "quick", "--bench-section", str(tmp_path / "bench.md"), "--stamp", str(stamp)), root)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("README.md")} == before
    assert stamp.exists()


def test_unchanged_readmes_are_not_rewritten(tmp_path):
    root = _tree(tmp_path)
    readmes(_args(tmp_path, "cpu"), root)
    for p in root.rglob("README.md"):
        os.utime(p, ns=(1, 1))
    readmes(_args(tmp_path, "cpu"), root)
    assert all(p.stat().st_mtime_ns == 1 for p in root.rglob("README.md"))
