"""``python -m common.aggregate readmes``: one scale's blocks only, quick never inlined in tracked READMEs,
files rewritten only when their text changes, the bench block only when its section is passed, and the
performance headline read from the benchmark section."""
import argparse
import os
import re
from pathlib import Path

from common.aggregate.cli import bench_headline, parser, readmes, workflow_elapsed

ROOT = Path(__file__).resolve().parent.parent

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
            "paper,claim,label,role,outcome,verdict,family_size,regime_name\n"
            f"p,c1_{scale},A > B,primary,reproduced,reproduced,3,\n"
            f"p,c2_{scale},A > C,primary,underpowered,underpowered,3,\n"
            f"p,c3_{scale},A < C,primary,contradicted,contradicted,3,\n"
            f"p,c4_{scale},A > C ECE,secondary to c2_{scale},underpowered,underpowered,3,\n")
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
    # the top README gets the compact view generated from the verdicts: counts over the primary rows and one
    # answer line per paper naming the decisive rows, the secondary row counted apart
    assert "**1 reproduced, 1 contradicted, 1 underpowered** (3 primary claim rows at `cpu` scale" in top
    assert ("- [p](papers/p) (3 primary rows, Bonferroni ×3): reproduced 1 (A > B); contradicted 1 (A < C); "
            "underpowered 1. (1 secondary row not counted.)") in top
    assert "results/cpu/summary.md" in top
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


SECTION = """Measured today on a test machine. Every figure is a ratio.

| measurement | target | precise | end to end [IQR] | verdict |
|---|---|---|---|---|
| mixup vs erm | <= 2% over erm | +0.1% | +0.4% | met |
| ours mixup vs timm mixup | ours <= timm | 1.15x | - | missed: 15% slower than timm (it allocates) |

**Workflow wall time, `quick` scale** (sum of the benchmark files):

| paper | runs measured / planned | wall (sum) | cpu (sum) | ~ elapsed on 2 idle cores | longest run |
|---|---|---|---|---|---|
| a | 2/2 | 0:50 | 0:46 | 0:23 | 0:05 |
| all papers | 2/2 | 0:50 | 0:46 | 0:23 | 0:05 |

**Workflow wall time, `cpu` scale** (sum of the benchmark files):

| paper | runs measured / planned | wall (sum) | cpu (sum) | ~ elapsed on 2 idle cores | longest run |
|---|---|---|---|---|---|
| a | 4/4 | 3:00:00 | 2:06:35 | 1:03:17 | 1:20:04 |
| b | 1/1 | 30:00 | 29:58 | 14:59 | 30:00 |
| all papers | 5/5 | 3:30:00 | 2:36:33 | 1:18:17 | 1:20:04 |
"""


def test_bench_headline_has_targets_and_elapsed_time_per_paper_and_scale():
    text = bench_headline(SECTION, "intro\n* **deit**: 17 workers.\n")
    assert text.startswith("Measured today on a test machine.\n")
    assert "Targets: 1 of 2 met. Missed: ours mixup vs timm mixup." in text
    assert ("| paper | `quick` | `cpu` |\n|---|---|---|\n| a | 23 s | 1 h 03 min |\n| b | - | 15 min |\n"
            "| all papers | 23 s | 1 h 18 min |\n") in text
    assert text.rstrip().endswith("* **deit**: 17 workers.")


def test_the_committed_bench_section_parses():
    """benchmarks.report writes the tables bench_headline reads: the committed section has both scales."""
    section = (ROOT / "results/bench/README_section.md").read_text()
    elapsed = workflow_elapsed(section)
    assert set(elapsed) == {"quick", "cpu"}
    for rows in elapsed.values():
        assert rows[-1][0] == "all papers" and all(re.fullmatch(r"\d+(:\d\d){1,2}", r[2]) for r in rows)


def test_the_top_readme_stays_a_first_page():
    # its largest parts are the generated per-paper answers (~0.8k), the add-a-method files that
    # tests/test_add_a_method.py reads (~3.5k) and the SLURM section (~1.3k); details live in linked files
    assert len((ROOT / "README.md").read_text()) < 18_500


def test_bench_headline_uses_the_one_machine_column_when_the_section_has_it():
    cpu = SECTION.split("**Workflow wall time, `cpu` scale**")[0] + """**Workflow wall time, `cpu` scale** (sum):

| paper | runs measured / planned | wall (sum) | cpu (sum) | cpu, one machine (sum) | ~ elapsed on 2 idle cores | longest run |
|---|---|---|---|---|---|---|
| a | 4/4 | 3:00:00 | 2:06:35 | 1:40:00 | 50:00 | 1:20:04 |
| all papers | 4/4 | 3:00:00 | 2:06:35 | 1:40:00 | 50:00 | 1:20:04 |
"""
    text = bench_headline(cpu)
    assert "| a | 23 s | 50 min |" in text and "one machine's units" in text
    assert "one machine's units" not in bench_headline(SECTION)
