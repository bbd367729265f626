"""Benchmarks: the ``--quick`` run end to end, the workflow-time summary, the timing
helpers, and the bit-exactness of the allocation-saving mixing paths the benchmarks motivated."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.report import read_csv, verdict
from benchmarks.timing import COLUMNS, Timings, interleave, quantiles, ratio_summary
from benchmarks.workflow_times import COLUMNS as WF_COLUMNS
from benchmarks.workflow_times import read_benchmarks, summarize
from common.mixing import Box, mask_mix, mix_inputs, paste_box

FAST = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------- the quick run
@pytest.mark.slow
def test_quick_run_writes_csv_figure_and_markdown(tmp_path):
    out = tmp_path / "bench"
    empty = tmp_path / "repo"  # no workflow benchmark files: the output depends on the measurements only
    (empty / "papers").mkdir(parents=True)
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--out", str(out), "--quick", "--root", str(empty)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    for name in ("bench.csv", "bench.png", "bench.pdf", "README_section.md"):
        assert (out / name).stat().st_size > 0, name
    header = [ln for ln in (out / "bench.csv").read_text().splitlines() if ln.startswith("#")]
    text = "\n".join(header)
    assert "cpu:" in text and "torch " in text and "threads:" in text
    df = read_csv(out / "bench.csv")
    assert list(df.columns) == COLUMNS
    ok = df[df["status"] == "ok"]
    assert set(ok["section"]) >= {"method_overhead", "trainer", "data_path", "mixing_ops", "cpu_options"}
    for col in ("ratio", "variant_s", "baseline_s"):
        vals = ok[col].astype(float)
        assert vals.map(math.isfinite).all() and (vals > 0).all(), (col, ok[~vals.map(math.isfinite)])
    assert (ok["repeats"] >= 1).all()
    # the performance targets are evaluated
    assert ok["target_met"].astype(str).isin(["True", "False"]).sum() >= 4
    assert {"erm"} <= set(df.loc[df["section"] == "method_overhead", "baseline"])
    md = (out / "README_section.md").read_text()
    assert "Targets" in md and "bench.png" in md and "threads" in md
    # the figure and markdown can be redrawn from the saved measurements alone
    p = subprocess.run([sys.executable, "-m", "benchmarks.run", "--out", str(out), "--render-only", "--root",
                        str(empty)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "README_section.md").read_text() == md


# --------------------------------------------------------------------------- timing helpers
def test_interleave_shuffles_rounds_and_records_both_clocks():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    t = interleave(fns, rounds=6, inner=2, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    blocks = calls[3:][::2]  # each variant runs `inner` = 2 units per block
    assert calls[3:][1::2] == blocks
    rounds = [blocks[i:i + 3] for i in range(0, 18, 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)  # every variant once per round
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds
    assert t.rounds == 6 and set(t.cpu) == set(t.wall) == set("abc")
    assert all(x >= 0 for v in t.cpu.values() for x in v)
    calls.clear()
    interleave(fns, rounds=6, inner=2, warmup=1)
    assert calls[3:][::2] == blocks  # seeded: the same orders again


def test_ratio_summary_is_the_median_of_per_round_ratios():
    t = Timings({"v": [2.0, 3.0, 10.0], "b": [1.0, 1.0, 1.0]}, {"v": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 2.0]})
    s = ratio_summary(t, "v", "b")
    assert s["ratio"] == 3.0 and s["q25"] == 2.5 and s["q75"] == 6.5 and s["repeats"] == 3
    assert s["ratio_wall"] == 1.0 and s["clock"] == "cpu"
    assert quantiles([4.0]) == (4.0, 4.0, 4.0)
    assert all(math.isnan(q) for q in quantiles([]))


def test_verdict_says_by_how_much_a_target_is_missed():
    row = {"name": "step_overhead", "section": "method_overhead", "ratio": 1.05, "ratio_q25": 1.04,
           "target_ratio_max": 1.02}
    assert verdict(row).startswith("missed by 3.0 points")
    assert verdict({**row, "ratio": 1.01}) == "met"
    assert "within noise" in verdict({**row, "ratio_q25": 1.0})
    tr = {"name": "trainer_vs_bare", "section": "trainer", "ratio": 1 / 0.9, "ratio_q25": 1 / 0.9,
          "target_ratio_max": 1 / 0.95}
    assert "0.900x" in verdict(tr) and "5.0 points" in verdict(tr)
    assert verdict({**row, "target_ratio_max": float("nan")}) == ""


# --------------------------------------------------------------------------- workflow times
def test_workflow_summary_sums_benchmark_files_per_paper(tmp_path, monkeypatch):
    import common.config as C

    bench = tmp_path / "results" / "cpu" / "benchmarks"
    bench.mkdir(parents=True)
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rid, s, cpu in (("r1", 10.0, 4.0), ("r2", 20.0, 5.0), ("shared", 30.0, 6.0)):
        (bench / f"{rid}.tsv").write_text(head + f"{s}\t0:00:{int(s)}\t100\t0\t0\t0\t0\t0\t1\t{cpu}\n")
    (bench / "stray.tsv").write_text(head + "99\t0\t1\t0\t0\t0\t0\t0\t1\t1\n")  # not planned: ignored
    (bench / "broken.tsv").write_text("")
    monkeypatch.setattr(C, "plan", lambda scale, root=".", only=None: (
        {}, {"a": ["r1", "shared"], "b": ["r2", "shared", "missing"], "c": []}))
    df = summarize("cpu", tmp_path)
    assert list(df.columns) == WF_COLUMNS
    by = df.set_index("paper")
    assert list(by.index) == ["a", "b", "all papers"]
    assert by.loc["a", "wall_s"] == 40.0 and by.loc["a", "cpu_s"] == 10.0 and bool(by.loc["a", "complete"])
    assert by.loc["b", "runs_measured"] == 2 and by.loc["b", "runs_planned"] == 3 and not by.loc["b", "complete"]
    assert by.loc["all papers", "wall_s"] == 60.0 and by.loc["all papers", "runs_planned"] == 4
    assert len(read_benchmarks("cpu", tmp_path)) == 4
    assert summarize("quick", tmp_path).empty


# --------------------------------------------------------------------------- fast mixing paths
def _reference_mix(x, index, lam):
    if isinstance(lam, torch.Tensor):
        lam = lam.view(-1, *([1] * (x.dim() - 1)))
    return x * lam + x[index] * (1 - lam)


@FAST
@given(seed=st.integers(0, 2**31 - 1), per_sample=st.booleans())
def test_mix_inputs_fast_paths_are_bit_identical(seed, per_sample):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, 5, 4, generator=g)
    idx = torch.randperm(6, generator=g)
    lam = torch.rand(6, generator=g) if per_sample else float(torch.rand((), generator=g))
    ref = _reference_mix(x, idx, lam)
    assert torch.equal(mix_inputs(x, idx, lam), ref)
    y = x.clone()
    out = mix_inputs(y, idx, lam, inplace=True)
    assert torch.equal(out, ref) and out.data_ptr() == y.data_ptr()


@FAST
@given(seed=st.integers(0, 2**31 - 1), r0=st.integers(0, 7), c0=st.integers(0, 6), inplace=st.booleans())
def test_paste_box_and_mask_mix_match_their_definitions(seed, r0, c0, inplace):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 2, 8, 7, generator=g)
    idx = torch.randperm(5, generator=g)
    box = Box(r0, min(8, r0 + 3), c0, min(7, c0 + 4))
    ref = x.clone()
    ref[:, :, box.r0:box.r1, box.c0:box.c1] = x[idx][:, :, box.r0:box.r1, box.c0:box.c1]
    src = x.clone()
    assert torch.equal(paste_box(src, idx, box, inplace=inplace), ref)
    assert torch.equal(src, ref if inplace else x)
    m = (torch.rand(5, 1, 8, 7, generator=g) < 0.5).float()
    out, lam = mask_mix(x, idx, m)
    assert torch.equal(out, x * (1 - m) + x[idx] * m)
    assert torch.allclose(lam, 1 - m.flatten(1).mean(1))


def test_every_registered_method_is_benchmarked_without_editing_the_catalogue():
    """A method missing from ``CATALOGUE`` is still timed (default parameters, on the CNN for
    classification and the MLP for regression-only methods): no list to edit when adding one."""
    from benchmarks.methods_bench import CATALOGUE, registered, uncatalogued
    from common.methods import METHODS

    methods, _ = registered()
    catalogued = {n for vs in CATALOGUE.values() for v in vs for n in v.names[:1]}
    extra = dict((v.label, key) for key, v in uncatalogued(methods))
    assert methods <= catalogued | set(extra)
    for name, key in extra.items():
        tasks = getattr(METHODS.get(name), "tasks", ("classification",))
        assert key == ("resnet20" if "classification" in tasks else "mlp")
