"""common.workplan (the workflow's plan, made once) and common.freshness (what is current, decided from
file contents without writing), on a throw-away repository with two tiny papers and fake runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow_helpers import CROSS_TABLE, _add_paper, _copy_repo, tree_state

from common import freshness, workplan
from common.codehash import code_digest
from common.config import ConfigError
from common.fileio import files_digest
from common.freshness import assess, cross_record, paper_record, readmes_record, retrained_stamp
from common.workplan import Plan


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """tinya (erm, mixup; a tables.py and a plots.py hook, a reported.csv) and tinyb (erm, shared with tinya),
    the working directory (as for the workflow's jobs)."""
    r = _copy_repo(tmp_path)
    monkeypatch.chdir(r)
    _add_paper(r, "tinya", "erm, {name: mixup, alpha: 0.4}", "mixup")
    _add_paper(r, "tinyb", "erm", "erm")
    (r / "papers/tinya/tables.py").write_text(CROSS_TABLE)
    (r / "papers/tinya/plots.py").write_text("def make_figures(runs, out_dir):\n    pass\n")
    (r / "papers/tinya/reported.csv").write_text(
        "paper,method,dataset,model,epochs,metric,value,baseline_method,baseline_value,source\n")
    return r


def _train_fake(plan: Plan, digest=None) -> None:
    """A metrics.json per run, recording the current code digest of its config (or ``digest``)."""
    for rid, cfg in plan.runs.items():
        m = plan.root / plan.run_file(rid, "metrics.json")
        m.parent.mkdir(parents=True, exist_ok=True)
        m.write_text(json.dumps({"provenance": {"config": cfg, "code_digest": digest or code_digest(cfg, plan.root)}}))


def _record_all(plan: Plan) -> None:
    """What the digest rules and the README splice write once everything is built."""
    for p in plan.papers:
        assert freshness.main(["record", paper_record(plan.scale, p), *plan.paper_inputs(p)]) == 0
    for rec in (cross_record(plan.scale), readmes_record(plan.scale)):
        (plan.root / rec).write_text(files_digest(plan.cross_inputs(), plan.root) + "\n")


def test_each_paper_is_read_and_expanded_once(repo, monkeypatch):
    loads, expansions = [], []
    real_load, real_expand = workplan.load_experiments, workplan.expand_grid
    monkeypatch.setattr(workplan, "load_experiments", lambda p: loads.append(p) or real_load(p))
    monkeypatch.setattr(workplan, "expand_grid", lambda e, s, w: expansions.append((w, s)) or real_expand(e, s, w))
    plan = Plan.build(repo, "quick")
    assert sorted(Path(p).parent.name for p in loads) == ["tinya", "tinyb"]
    assert len(expansions) == len(set(expansions)) == 2  # each paper defines one scale
    assert len(plan.runs) == 2 and plan.papers == ["tinya", "tinyb"]  # tinyb's erm run is tinya's
    assert set(plan.by_paper["tinyb"]) < set(plan.by_paper["tinya"])


def test_a_subset_plans_its_papers_and_names_unknown_ones(repo):
    plan = Plan.build(repo, "quick", ["tinyb"])
    assert plan.papers == ["tinyb"] and len(plan.runs) == 1 and len(plan.all_runs) == 2
    with pytest.raises(ConfigError, match="unknown paper 'tinyc'. Did you mean .*'tinya'"):
        Plan.build(repo, "quick", ["tinyc"])


def test_a_broken_claim_names_its_paper(repo):
    exp = repo / "papers/tinyb/experiments.yaml"
    exp.write_text(exp.read_text().replace("method: erm", "method: nosuchmethod"))
    with pytest.raises(ConfigError, match="papers/tinyb: .*nosuchmethod"):
        Plan.build(repo, "quick")


def test_aggregate_jobs_are_given_every_file_they_read(repo):
    plan = Plan.build(repo, "quick")
    runs = sorted(plan.runs)
    table = plan.table_job_inputs("tinya")
    assert table["paper"] == ["papers/tinya/experiments.yaml", "papers/tinya/reported.csv", "papers/tinya/plots.py"]
    assert table["epochs"] == [f"results/quick/runs/{r}/epochs.jsonl" for r in plan.by_paper["tinya"]]
    summary = plan.summary_job_inputs()
    assert summary["benchmarks"] == [f"results/quick/benchmarks/{r}.tsv" for r in runs]
    assert summary["paper"] == ["papers/tinya/experiments.yaml", "papers/tinya/tables.py", "papers/tinyb/experiments.yaml"]
    assert summary["claims"] == ["results/quick/tables/tinya_claims.csv", "results/quick/tables/tinyb_claims.csv"]
    readme = plan.readme_job_inputs()
    assert readme["readmes"] == ["README.md", "papers/tinya/README.md", "papers/tinyb/README.md"]
    assert readme["digest"] == plan.cross_inputs()


def test_nothing_is_current_before_anything_was_built(repo):
    fresh = assess(Plan.build(repo, "quick"))
    assert not fresh.stale and not fresh.adopted and not fresh.cross and not fresh.readmes


def test_recorded_digests_adopt_per_paper_and_across_papers(repo):
    plan = Plan.build(repo, "quick")
    _train_fake(plan)
    _record_all(plan)
    fresh = assess(plan)
    assert fresh.adopted == {"tinya", "tinyb"} and fresh.cross and fresh.readmes and not fresh.stale
    exp = repo / "papers/tinyb/experiments.yaml"  # an edited paper: it and the cross-paper aggregates rebuild
    exp.write_text(exp.read_text().replace("method beats erm", "method beats erm (edited)"))
    fresh = assess(Plan.build(repo, "quick"))
    assert fresh.adopted == {"tinya"} and not fresh.cross and not fresh.readmes
    assert assess(Plan.build(repo, "quick", ["tinya"])).adopted == {"tinya"}  # a subset adopts nothing cross-paper


def test_a_readme_splice_of_other_aggregates_is_not_current(repo):
    plan = Plan.build(repo, "quick")
    _train_fake(plan)
    _record_all(plan)
    (repo / readmes_record("quick")).write_text("0" * 64 + "\n")
    fresh = assess(plan)
    assert fresh.cross and not fresh.readmes


def test_a_stale_run_is_retrained_with_everything_built_from_it(repo):
    plan = Plan.build(repo, "quick")
    _train_fake(plan)
    _record_all(plan)
    mixup = next(r for r in plan.runs if r.startswith("mixup"))
    m = repo / plan.run_file(mixup, "metrics.json")
    rec = json.loads(m.read_text())
    rec["provenance"]["code_digest"] = "0" * 16  # computed by other code; its digest record still matches
    m.write_text(json.dumps(rec))
    _record_all(plan)
    fresh = assess(plan)
    assert fresh.stale == {mixup} and fresh.adopted == {"tinyb"} and not fresh.cross
    assert retrained_stamp("quick", mixup) in plan.targets(fresh.stale)
    stamp = repo / retrained_stamp("quick", mixup)  # left by an interrupted workflow: it would hide the run
    stamp.parent.mkdir(parents=True)
    stamp.touch()
    with pytest.raises(ValueError, match=f"rm {retrained_stamp('quick', mixup)}"):
        assess(plan)
    other = repo / retrained_stamp("quick/verify/m", "x")  # a first training's stamp (nothing asked for it)
    other.parent.mkdir(parents=True)
    other.touch()
    freshness.remove_stamps(repo, "quick")
    assert not stamp.exists() and not other.exists()


def test_deciding_writes_nothing(repo):
    plan = Plan.build(repo, "quick")
    _train_fake(plan)
    _record_all(plan)
    before = tree_state(repo)
    for subset in ((), ("tinya",)):
        assess(Plan.build(repo, "quick", subset))
    assert tree_state(repo) == before


def test_record_usage_is_an_error(capsys):
    assert freshness.main(["record"]) == 2
    assert "python -m common.freshness record OUT FILE" in capsys.readouterr().err
