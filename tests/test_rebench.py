"""benchmarks.rebench: measurement batches from git history, per-batch ratios, one-machine units."""
import os
import subprocess

import pandas as pd
import pytest

from benchmarks.rebench import estimate, measurement_batches, one_machine_factors

TSV = "s\th:m:s\tmax_rss\tcpu_time\n{s}\t0:00:01\t100\t{cpu}\n"


def _commit(repo, files: dict, date: str):
    for name, cpu in files.items():
        p = repo / "results/cpu/benchmarks" / f"{name}.tsv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(TSV.format(s=cpu * 1.5, cpu=cpu))
    env = {**os.environ, "GIT_COMMITTER_DATE": f"{date}T12:00:00", "GIT_AUTHOR_DATE": f"{date}T12:00:00"}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", date], cwd=repo,
                   check=True, env=env)


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    _commit(tmp_path, {"a-s0": 100.0, "a-s1": 110.0, "b-s0": 50.0}, "2026-01-01")
    _commit(tmp_path, {"c-s0": 10.0, "a-s1": 120.0}, "2026-01-05")  # a-s1 retrained on day 2
    return tmp_path


def test_batches_are_the_day_of_the_last_commit_that_wrote_each_file(repo):
    b = measurement_batches("cpu", repo).set_index("run_id")
    assert b["batch"].to_dict() == {"a-s0": "2026-01-01", "a-s1": "2026-01-05", "b-s0": "2026-01-01",
                                    "c-s0": "2026-01-05"}
    assert b.loc["a-s1", "cpu_time"] == 120.0


def test_files_git_does_not_know_are_uncommitted(repo, tmp_path_factory):
    (repo / "results/cpu/benchmarks/new-s0.tsv").write_text(TSV.format(s=1, cpu=1))
    assert measurement_batches("cpu", repo).set_index("run_id").loc["new-s0", "batch"] == "uncommitted"
    plain = tmp_path_factory.mktemp("nogit")
    (plain / "results/cpu/benchmarks").mkdir(parents=True)
    (plain / "results/cpu/benchmarks/x-s0.tsv").write_text(TSV.format(s=1, cpu=1))
    assert measurement_batches("cpu", plain)["batch"].tolist() == ["uncommitted"]


def test_estimate_scales_each_batch_by_the_median_ratio_of_its_reruns(repo):
    b = measurement_batches("cpu", repo)
    reruns = pd.DataFrame({"run_id": ["a-s0", "b-s0", "c-s0"], "rerun_cpu_time": [130.0, 60.0, 5.0]})
    est = estimate(b, reruns).set_index("batch")
    # day 1 (a-s0, b-s0): ratios 1.3 and 1.2 -> median 1.25 over 150 CPU-s; day 2 (a-s1, c-s0): 0.5 over 130
    assert est.loc["2026-01-01", "ratio"] == pytest.approx(1.25)
    assert est.loc["2026-01-01", "today_cpu_s"] == pytest.approx(150 * 1.25)
    assert est.loc["2026-01-05", "today_cpu_s"] == pytest.approx(65.0)
    assert est["reruns"].tolist() == [2, 1]


def _rebench_csv(repo, rows):
    path = repo / "results/bench/rebench.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["run_id", "rerun_cpu_time", "cpu_time"]).to_csv(path, index=False)
    return path


def test_one_machine_factors_use_the_largest_batch_as_reference(repo):
    # day 1 holds 150 CPU-s, day 2 130: day 1 is the reference
    _rebench_csv(repo, [["a-s0", 130.0, 100.0], ["c-s0", 5.0, 10.0]])
    factors, info = one_machine_factors("cpu", repo)
    assert info["reference"] == "2026-01-01" and info["today_per_reference"] == pytest.approx(1.3)
    # day-2 files cost 0.5x today and day-1 files 1.3x today: day 2 in day-1 units is 0.5 / 1.3
    assert factors == pytest.approx({"a-s0": 1.0, "b-s0": 1.0, "a-s1": 0.5 / 1.3, "c-s0": 0.5 / 1.3})


def test_reruns_of_changed_files_and_uncovered_batches_give_no_factors(repo):
    assert one_machine_factors("cpu", repo) is None  # no rebench.csv
    # c-s0's committed file says 10 CPU-s, the rerun was measured against 40: stale, so day 2 is uncovered
    _rebench_csv(repo, [["a-s0", 130.0, 100.0], ["c-s0", 5.0, 40.0]])
    assert one_machine_factors("cpu", repo) is None


def test_summarize_adds_one_machine_sums_only_with_factors(tmp_path, monkeypatch):
    from benchmarks import workflow_times

    bench = pd.DataFrame({"run_id": ["r1", "r2"], "s": [10.0, 20.0], "cpu_time": [8.0, 16.0], "max_rss": [1.0, 2.0]})
    monkeypatch.setattr(workflow_times, "read_benchmarks", lambda scale, root: bench)
    monkeypatch.setattr("common.config.plan", lambda scale, root, only=None: ({}, {"p": ["r1", "r2"]}))
    plain = workflow_times.summarize("cpu", tmp_path).set_index("paper")
    assert plain.loc["all papers", "cpu_s"] == 24.0 and plain["cpu_one_machine_s"].isna().all()
    scaled = workflow_times.summarize("cpu", tmp_path, factors={"r1": 1.0, "r2": 0.5}).set_index("paper")
    assert scaled.loc["p", "cpu_one_machine_s"] == pytest.approx(16.0)
    partial = workflow_times.summarize("cpu", tmp_path, factors={"r1": 1.0}).set_index("paper")
    assert partial["cpu_one_machine_s"].isna().all()  # a run without a factor: no one-machine sum


def test_machine_units_rescale_each_run_by_the_reruns_of_its_own_batch_and_model(repo):
    import json

    from benchmarks.rebench import machine_units, write_machine_units

    kinds = {"a-s0": "resnet20", "a-s1": "resnet20", "b-s0": "mlp", "c-s0": "resnet20"}
    for rid, model in kinds.items():
        d = repo / "results/cpu/runs" / rid
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"provenance": {"config": {"model": {"name": model}}}}))
    # day 1: resnet20 1.3x, mlp 1.2x (one batch, two kinds, two factors); day 2: resnet20 0.5x, no mlp rerun
    csv = _rebench_csv(repo, [["a-s0", 130.0, 100.0], ["b-s0", 60.0, 50.0], ["c-s0", 5.0, 10.0]])
    (repo / "results/bench/rebench_meta.json").write_text(json.dumps({"date": "2026-01-09 10:00 UTC",
                                                                      "hardware": {"cpu_model": "Some CPU"}}))
    units = machine_units("cpu", repo).set_index("run_id")
    assert units["factor"].to_dict() == pytest.approx({"a-s0": 1.3, "a-s1": 0.5, "b-s0": 1.2, "c-s0": 0.5})
    assert units["reruns"].to_dict() == {"a-s0": 1, "a-s1": 1, "b-s0": 1, "c-s0": 1}
    assert set(units["unit"]) == {"Some CPU, 2026-01-09"}
    _commit(repo, {"d-s0": 7.0}, "2026-01-05")  # an mlp file of day 2, where no mlp was rerun
    (repo / "results/cpu/runs/d-s0").mkdir()
    (repo / "results/cpu/runs/d-s0/metrics.json").write_text(json.dumps({"provenance": {"config": {"model": {"name": "mlp"}}}}))
    assert pd.isna(machine_units("cpu", repo, csv).set_index("run_id").loc["d-s0", "factor"])
    out = write_machine_units("cpu", repo)
    assert out == repo / "results/bench/machine_units_cpu.csv" and len(pd.read_csv(out)) == 5
