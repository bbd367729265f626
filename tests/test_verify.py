"""`snakemake verify` (common.verify) and the matrix's time column in one machine's units.

End to end on a throw-away repository with one tiny paper (erm and mixup, 3 seeds, digits MLP, 4
epochs): `snakemake verify` trains the quick runs first, retrains them into
results/quick/verify/<machine id>/ and reports them bit-identical; a committed metric perturbed by
hand makes its run "outside seed noise" and names the claim it is in. The rest are unit tests of the
interval, the selection, the machine id and the rendered matrix.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import ROOT, _add_paper, _copy_repo, _git, _smk


def _machine_dir(repo: Path) -> Path:
    dirs = sorted((repo / "results/quick/verify").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository with one tiny paper on which `snakemake verify` ran: its 6 quick runs trained, then
    retrained into the verify tree."""
    r = _copy_repo(tmp_path_factory.mktemp("verify"))
    _add_paper(r, "tinyv", "erm, {name: mixup, alpha: 0.4}", "mixup")
    exp = r / "papers/tinyv/experiments.yaml"
    # three seeds, trained long enough that seed noise is a few points of top-1 (not tens)
    exp.write_text(exp.read_text().replace("seed: [0]", "seed: [0, 1, 2]").replace("epochs: 2", "epochs: 4")
                   .replace("lr: 0.05", "lr: 0.3"))
    _git(r, "init", "-q")
    _git(r, "add", "-A")
    _git(r, "commit", "-q", "-m", "tiny")
    p = _smk(r, "verify", "--cores", "2")
    r.joinpath("verify_stdout.txt").write_text(p.stdout + p.stderr)
    return r


@pytest.mark.slow
def test_verify_trains_the_quick_runs_then_reports_them_bit_identical(repo):
    runs = sorted((repo / "results/quick/runs").glob("*/metrics.json"))
    assert len(runs) == 6  # trained first: the quick runs were missing
    mdir = _machine_dir(repo)
    rep = json.loads((mdir / "report.json").read_text())
    assert sorted(r["run_id"] for r in rep["runs"]) == sorted(p.parent.name for p in runs)
    assert {r["status"] for r in rep["runs"]} == {"bit-identical"}
    assert all((mdir / "runs" / r.parent.name / "metrics.json").is_file() for r in runs)
    assert [c["changes"] for c in rep["claims"]] == [False]
    assert rep["version_differences"] == []
    assert rep["machine"]["id"] == mdir.name and rep["machine"]["torch_cpu_capability"]
    # the one-line summary is printed at the end, and heads the Markdown report
    out = (repo / "verify_stdout.txt").read_text()
    assert rep["summary"] in out and rep["summary"].startswith("verify quick on ")
    assert "6 bit-identical" in rep["summary"] and f"**{rep['summary']}**" in (mdir / "report.md").read_text()
    p = _smk(repo, "verify", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr


@pytest.mark.slow
def test_a_perturbed_committed_metric_is_outside_seed_noise_and_names_its_claim(repo, tmp_path):
    mdir = _machine_dir(repo)
    victim = min((repo / "results/quick/runs").glob("mixup*-s0-*/metrics.json"))
    original = victim.read_text()
    m = json.loads(original)
    m["test"]["top1"] -= 40.0  # a committed number that no longer holds (seeds spread a few points)
    victim.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    try:
        out_md, out_json = tmp_path / "report.md", tmp_path / "report.json"
        p = subprocess.run([sys.executable, "-m", "common.verify", "report", "--scale", "quick", "--plan",
                            str(mdir / "plan.json"), "--verify-dir", str(mdir.relative_to(repo)), "--out-md", str(out_md),
                            "--out-json", str(out_json)], cwd=repo, capture_output=True, text=True,
                           env=_env(repo), check=False)
        assert p.returncode == 0, p.stderr[-3000:]
    finally:
        victim.write_text(original)
    rep = json.loads(out_json.read_text())
    by_id = {r["run_id"]: r for r in rep["runs"]}
    bad = by_id[victim.parent.name]
    assert bad["status"] == "outside seed noise"
    assert bad["checks"]["top1"]["inside"] is False
    assert bad["claims"] == ["tinyv/tinyv_claim"]
    assert {r["status"] for rid, r in by_id.items() if rid != victim.parent.name} == {"bit-identical"}
    assert "1 outside seed noise" in rep["summary"] and victim.parent.name in rep["summary"]
    assert "tinyv/tinyv_claim" in out_md.read_text()


@pytest.mark.slow
def test_a_budget_buys_a_calibration_then_a_sample_that_fits(repo):
    """Last of the module's end-to-end tests: it replaces the plan (the reruns already exist, so only the
    calibration, the plan and the report run)."""
    _smk(repo, "verify", "--cores", "2", "--config", "verify_budget=0.6")
    mdir = _machine_dir(repo)
    cal = json.loads((mdir / "calibration.json").read_text())
    plan = json.loads((mdir / "plan.json").read_text())
    assert set(cal["kinds"]) == {"mlp"} and cal["cpu_s"] > 0 and cal["kinds"]["mlp"]["ratio"] > 0
    assert plan["budget_min"] == 0.6 and not plan["explicit"]
    assert sum(r["est_cpu_s"] for r in plan["runs"]) <= 0.6 * 60 - cal["cpu_s"]
    rep = json.loads((mdir / "report.json").read_text())
    assert [r["run_id"] for r in rep["runs"]] == [r["run_id"] for r in plan["runs"]]
    assert "(budget 0.6)" in rep["summary"]


def _env(repo: Path) -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(repo)}


# ----------------------------------------------------------------------------- the verdict on one rerun
def test_prediction_interval_is_mean_plus_minus_t_sd_sqrt_one_plus_one_over_n():
    from scipy import stats

    from common.verify.compare import prediction_interval

    lo, hi = prediction_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 * math.sqrt(1 + 1 / 3)
    assert (lo, hi) == pytest.approx((2 - half, 2 + half))
    assert prediction_interval([1.0]) is None


def test_a_seed_sized_difference_is_within_noise_and_a_shifted_value_is_not():
    from common.verify.compare import metric_check

    others = [90.0, 91.0]
    assert metric_check(90.5, 91.5, others)["inside"] is True
    # the committed value is judged without itself in the interval, so a shifted one is caught
    shifted = metric_check(60.0, 90.5, others)
    assert shifted["inside"] is False and not (shifted["interval_for_committed"][0] <= 60.0)
    assert metric_check(90.5, 91.5, [])["inside"] is None  # one committed seed: no interval


def test_comparable_ignores_clocks_and_the_folder_name_but_not_a_number(tmp_path):
    from common.verify.compare import comparable, first_difference

    def run(name, loss, secs, cpu):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"run_id": name, "test": {"top1": 50.0}, "train_images_per_sec": secs,
                                                    "provenance": {"train_cpu_sec": cpu},
                                                    "last_epoch": {"epoch": 1, "train_secs": secs}}))
        (d / "epochs.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": loss, "train_secs": secs}) + "\n")
        return d

    a, b = run("a", 0.5, 1.0, 3.0), run("b", 0.5, 2.0, 4.0)
    assert first_difference(comparable(a), comparable(b)) is None
    c = run("c", 0.5000000000000001, 1.0, 3.0)
    assert first_difference(comparable(a), comparable(c)) == "epochs.0.train_loss: 0.5 vs 0.5000000000000001"


def test_seeds_are_pooled_across_settings_where_a_claim_pools_them():
    from common.verify.compare import seed_groups

    runs = [{"dir": Path(f"runs/{m}-s{k}"), "label": m, "setting": f"split{k}"} for m in ("erm", "cmix") for k in (0, 1)]
    runs.append({"dir": Path("runs/other-s0"), "label": "other", "setting": "split0"})
    claims = [{"setting": "pooled", "run_ids": ["erm-s0", "erm-s1", "cmix-s0", "cmix-s1"]}]
    groups = seed_groups(runs, claims)
    assert groups["erm-s0"] == groups["erm-s1"] == ("erm", "pooled") != groups["cmix-s0"]
    assert groups["other-s0"] == ("other", "split0")  # in no pooling claim: its own setting


# ----------------------------------------------------------------------------- the sample within a budget
def test_closeness_is_the_nearest_interval_end_to_zero_or_the_papers_effect_in_widths():
    from common.verify.select import closeness

    assert closeness({"ci_low": 1.0, "ci_high": 3.0, "reported_effect": None}) == pytest.approx(0.5)
    assert closeness({"ci_low": 1.0, "ci_high": 3.0, "reported_effect": 3.2}) == pytest.approx(0.1)
    assert closeness({"ci_low": None, "ci_high": None}) == math.inf


def test_choose_covers_cheapest_groups_first_then_whole_claims_nearest_a_change():
    from common.verify.select import choose

    groups = {("erm", "s1"): ["e0", "e1"], ("mixup", "s1"): ["m0", "m1"], ("big", "s1"): ["b0"]}
    est = {"e0": 10.0, "e1": 12.0, "m0": 20.0, "m1": 5.0, "b0": 100.0}
    claims = [{"paper": "p", "claim": "far", "setting": "s1", "closeness": 2.0, "run_ids": ["e0", "e1", "m0", "m1"]},
              {"paper": "p", "claim": "near", "setting": "s1", "closeness": 0.1, "run_ids": ["e0", "e1", "b0"]}]
    # coverage: m1 (5) then e0 (10); b0 (100) does not fit in 40. Then "near" needs e1 + b0 (112): too much;
    # "far" needs e1 + m0 (32): 15 + 32 = 47 > 40 -> skipped as a whole
    assert [c["run_id"] for c in choose(groups, est, 40.0, claims)] == ["m1", "e0"]
    picked = choose(groups, est, 50.0, claims)
    assert [c["run_id"] for c in picked] == ["m1", "e0", "e1", "m0"]
    assert picked[-1]["reason"].startswith("claim p/far")
    assert [c["run_id"] for c in choose(groups, est, 1000.0, claims)][:3] == ["m1", "e0", "b0"]


# ----------------------------------------------------------------------------- the machine
def test_machine_id_names_the_cpu_type_not_the_host_and_follows_isa_and_capability():
    from common.verify.machine import machine_id

    hw = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_flags": ["avx2", "avx512f"], "torch_cpu_capability": "AVX512"}
    mid = machine_id(hw)
    assert mid.startswith("intel-xeon-avx512-") and len(mid) <= 40 and mid == machine_id(dict(hw))
    assert machine_id({**hw, "cpu_flags": ["avx2"]}) != mid
    assert machine_id({**hw, "torch_cpu_capability": "DEFAULT"}).startswith("intel-xeon-default-")


def test_version_differences_list_what_the_committed_provenance_does_not_record():
    from common.verify.machine import committed_versions, version_differences

    committed = committed_versions([{"versions": {"torch": "2.14.1", "numpy": "2.4.6", "platform": "Linux-a"}},
                                    {"versions": {"torch": "2.14.1", "numpy": "2.4.5", "platform": "Linux-b"}}])
    assert committed == {"numpy": ["2.4.5", "2.4.6"], "torch": ["2.14.1"]}
    here = {"torch": "2.14.1", "numpy": "2.5.0", "platform": "Linux-c"}
    assert version_differences(committed, here) == [{"package": "numpy", "committed": ["2.4.5", "2.4.6"],
                                                     "here": "2.5.0"}]


def test_the_lock_file_pins_every_version_the_committed_runs_recorded():
    from common.verify.machine import committed_versions

    pins = dict(line.split("==") for line in (ROOT / "requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    recorded = committed_versions([json.loads(f.read_text())["provenance"]
                                   for f in (ROOT / "results/cpu/runs").glob("*/metrics.json")])
    recorded.pop("python", None)
    assert recorded and all(pins.get(pkg) in versions for pkg, versions in recorded.items()), recorded
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


# ----------------------------------------------------------------------------- requests that cannot be met
def test_an_unknown_run_id_or_a_missing_budget_is_a_named_error_and_writes_nothing(tmp_path):
    out = tmp_path / "plan.json"

    def plan(*args):
        return subprocess.run([sys.executable, "-m", "common.verify", "plan", "--scale", "cpu", "--out", str(out), *args],
                              cwd=ROOT, capture_output=True, text=True, check=False)

    p = plan("--runs", "erm-cifar10-resnet20-s0-95f10207")
    assert p.returncode == 2 and "verify_runs: 'erm-cifar10-resnet20-s0-95f10207'" in p.stderr
    assert "Did you mean erm-cifar10-resnet20-s0-95f10206?" in p.stderr
    p = plan()
    assert p.returncode == 2 and "verify_budget=<CPU-minutes> or verify_runs=" in p.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- the matrix's time column
def _fake_run(root: Path, method: str, seed: int, cpu: float, hardware=None) -> str:
    rid = f"{method}-cifar10-resnet20-s{seed}-0000000{seed}"
    cfg = {"seed": seed, "dataset": {"name": "cifar10", "train_size": 100}, "model": {"name": "resnet20"},
           "method": {"name": method}, "train": {"epochs": 1}, "eval": {}}
    d = root / "results/cpu/runs" / rid
    d.mkdir(parents=True)
    prov = {"config": cfg, "train_cpu_sec": cpu, "train_time_sec": cpu, **({"hardware": hardware} if hardware else {})}
    (d / "metrics.json").write_text(json.dumps({"task": "classification", "test": {"top1": 50.0 + seed},
                                                "provenance": prov}))
    return rid


def _units(root: Path, rows: list[tuple]) -> None:
    f = root / "results/bench/machine_units_cpu.csv"
    f.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["run_id", "batch", "kind", "factor", "reruns", "unit"]).to_csv(f, index=False)


def _time_cells(root: Path) -> dict[str, str]:
    from common.aggregate import load_runs, matrix, matrix_markdown
    from common.aggregate.stats import read_machine_units

    runs = load_runs(sorted((root / "results/cpu/runs").glob("*/metrics.json")))
    units = read_machine_units(root / "results/bench/machine_units_cpu.csv")
    md = matrix_markdown(matrix(runs, {r["dir"].name: "erm" for r in runs}, units))
    rows = [ln.split(" | ") for ln in md.splitlines() if ln.startswith("| `")]
    return {cells[0].strip("| `"): cells[-1].rstrip(" |") for cells in rows} | {"_md": md}


@pytest.fixture
def two_machines(tmp_path):
    """erm timed on machine A (100 CPU-s a run), timm_mixup on machine B (400 CPU-s a run)."""
    ids = {m: [_fake_run(tmp_path, m, s, cpu) for s in (0, 1)] for m, cpu in (("erm", 100.0), ("timm_mixup", 400.0))}
    return tmp_path, ids


def test_matrix_time_column_is_in_one_machines_units_with_the_raw_ratio_beside_it(two_machines):
    root, ids = two_machines
    # B runs this workload 4x faster than A's units... : on the rerun machine erm costs 200, timm_mixup 200
    _units(root, [(r, "A", "resnet20", 2.0, 1, "Xeon, 2026-12-05") for r in ids["erm"]]
           + [(r, "B", "resnet20", 0.5, 1, "Xeon, 2026-12-05") for r in ids["timm_mixup"]])
    cells = _time_cells(root)
    assert cells["erm"] == "1.00x" and cells["timm_mixup"] == "1.00x (as measured 4.00x)"
    assert "its CPU time on the rerun machine (Xeon, 2026-12-05)" in cells["_md"]


def test_matrix_time_column_flags_ratios_across_machines_without_factors(two_machines):
    root, ids = two_machines
    _units(root, [(r, "A", "resnet20", float("nan"), 0, "Xeon") for r in ids["erm"]]
           + [(r, "B", "resnet20", 0.5, 1, "Xeon") for r in ids["timm_mixup"]])
    cells = _time_cells(root)
    assert cells["timm_mixup"] == "4.00x†" and "mixes machines" in cells["_md"]
    # one batch for every run: the ratio as measured is one machine's, shown plainly
    _units(root, [(r, "A", "resnet20", float("nan"), 0, "Xeon") for r in ids["erm"] + ids["timm_mixup"]])
    cells = _time_cells(root)
    assert cells["timm_mixup"] == "4.00x" and "†" not in cells["_md"]


def test_matrix_time_column_without_factors_compares_runs_that_record_one_cpu(tmp_path):
    hw = {"cpu_model": "AMD EPYC", "cpu_flags": ["avx2"], "torch_cpu_capability": "AVX2"}
    for m, cpu in (("erm", 100.0), ("mixup", 150.0)):
        for s in (0, 1):
            _fake_run(tmp_path, m, s, cpu, hardware=hw)
    assert _time_cells(tmp_path)["mixup"] == "1.50x"
    _fake_run(tmp_path, "mixup", 2, 150.0)  # a run that records no CPU: cannot be placed
    assert _time_cells(tmp_path)["mixup"] == "1.50x†"
