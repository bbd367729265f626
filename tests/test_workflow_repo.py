"""The workflow on the real repository: a fresh `git clone` (committed cpu results, no Snakemake metadata)
plans nothing to train and only a new paper's jobs; `snakemake --lint` is clean; bad configs, papers,
scales and run ids fail the dry run with a message; the README states the two commands CI runs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from workflow_helpers import ROOT, SNAKEMAKE, TINY, _add_paper, _copy_repo, _jobs, _planned, _smk


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh `git clone` of this repository (committed cpu results, no .snakemake), with this
    tree's workflow files on top so that uncommitted workflow changes are what is tested."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    dst = tmp_path_factory.mktemp("clone") / "repo"
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--branch", branch, str(ROOT), str(dst)], check=True)
    for name in ("Snakefile", "workflow", "profiles", "config"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dst / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, dst / name)
    return dst


def _smk_clone(clone: Path, *args: str, data="/nonexistent-data-root", check=True):
    env = {**os.environ, "MIXREPRO_DATA": data, "PYTHONPATH": str(clone)}
    p = subprocess.run(SNAKEMAKE + list(args), cwd=clone, capture_output=True, text=True, timeout=600, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


CPU_PAPER = """\
paper: newpaper
title: "A new paper"
scales:
  cpu:
    defaults:
      dataset: {name: digits, val_size: 100}
      model: {name: mlp, hidden: [16]}
      train: {epochs: 1, batch_size: 128, lr: 0.05}
      eval: {occlusion: null}
    grid:
      - vary: {method: [erm, {name: mixup, alpha: 0.3}], seed: [0]}
claims:
  - id: newpaper_claim
    text: "mixup beats erm"
    metric: top1
    method: mixup
    baseline: erm
"""


def test_fresh_clone_with_a_new_paper_at_cpu_schedules_only_its_jobs(clone, tmp_path):
    """Adoption is per paper: a new paper folder in a fresh clone plans its own runs, table and
    figures and the cross-paper aggregates, never the committed papers' tables and figures."""
    new = clone / "papers/newpaper"
    try:
        new.mkdir()
        (new / "__init__.py").write_text("")
        (new / "experiments.yaml").write_text(CPU_PAPER)
        p = _smk_clone(clone, "-n", "--config", "scale=cpu")
        out = p.stdout
        jobs = _jobs(out)
        assert jobs.get("train") == 2, jobs
        assert all("newpaper" in o or "/erm-" in o or "/mixup-" in o for o in _planned(out, "train")), out[-3000:]
        assert _planned(out, "paper_table") == ["results/cpu/tables/newpaper.csv, results/cpu/tables/newpaper.md, "
                                                "results/cpu/tables/newpaper_claims.csv"], out[-3000:]
        assert _planned(out, "paper_figures") == ["figures/cpu/newpaper"], out[-3000:]
        assert jobs.get("summary") == 1 and jobs.get("splice_readmes") == 1, jobs
    finally:
        shutil.rmtree(new, ignore_errors=True)


def test_fresh_clone_cpu_dry_run_trains_nothing_and_needs_no_data(clone):
    out = _smk_clone(clone, "-n", "--config", "scale=cpu").stdout
    jobs = _jobs(out)
    assert not set(jobs) & {"train", "paper_table", "paper_figures", "summary", "splice_readmes"}, jobs


def test_cpu_paper_subset_leaves_cross_paper_files_alone(clone):
    """The README's `--config scale=cpu papers='[cutmix]'` never rewrites the cross-paper aggregates."""
    p = _smk_clone(clone, "-n", "--config", "scale=cpu", "papers=[cutmix]")
    jobs = _jobs(p.stdout)
    assert not set(jobs) & {"summary", "splice_readmes"}, jobs
    assert "papers=['cutmix'] is a subset" in p.stderr


def test_quick_default_run_plans_no_readme_splice(clone):
    out = _smk_clone(clone, "-n").stdout
    jobs = _jobs(out)
    assert jobs.get("summary") == 1 and "splice_readmes" not in jobs, jobs


def test_lint_is_clean():
    p = subprocess.run(SNAKEMAKE + ["--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Congratulations" in p.stdout + p.stderr


def test_paper_scale_dry_run_without_data_names_the_missing_files():
    p = subprocess.run(SNAKEMAKE + ["-n", "--config", "scale=paper"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "MIXREPRO_DATA": "/nonexistent-data-root"})
    assert p.returncode != 0
    assert "/nonexistent-data-root" in p.stderr and "data_root=" in p.stderr and "Traceback" not in p.stderr


def _plan_error(*args: str) -> str:
    p = subprocess.run(SNAKEMAKE + ["-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0, p.stdout[-2000:]
    return p.stdout + p.stderr


def test_bad_workflow_config_is_rejected_with_suggestion():
    out = _plan_error("--config", "scael=cpu")
    assert "unknown key 'scael'" in out and "Did you mean 'scale'" in out


def test_unknown_scale_is_rejected():
    out = _plan_error("--config", "scale=huge")
    assert "'huge' is not one of" in out and "Traceback" not in out


def test_unknown_paper_is_rejected_with_suggestion():
    out = _plan_error("--config", "papers=[cutmx]")
    assert "unknown paper 'cutmx'" in out and "Did you mean 'cutmix'" in out and "Traceback" not in out


def test_threads_per_run_points_to_the_profile():
    out = _plan_error("--config", "threads_per_run=2")
    assert "set-threads" in out


def test_unknown_run_id_target_says_how_to_find_run_ids():
    out = _plan_error("results/cpu/runs/cutmix-cifar10-resnet20-s0-00000000/metrics.json", "--config", "scale=cpu")
    assert "unknown run id 'cutmix-cifar10-resnet20-s0-00000000'" in out and "Did you mean" in out
    assert "snakemake -n --config scale=cpu" in out and "KeyError" not in out


def _broken_paper_repo(tmp_path: Path, exp_text: str) -> Path:
    (tmp_path / "broken").mkdir()
    r = _copy_repo(tmp_path / "broken")
    _add_paper(r, "tinya", "erm, {name: mixup, alpha: 0.4}", "mixup")
    (r / "papers/tinya/experiments.yaml").write_text(exp_text)
    return r


def test_a_typo_in_a_scale_that_is_not_run_fails_the_dry_run(tmp_path):
    exp = TINY.format(name="tinya", methods="erm", method="erm").replace("claims:", """\
  paper:
    defaults:
      dataset: {name: digits}
      model: {name: mlp}
      train: {epochs: 2, batch_size: 128, lr: 0.05, epoch: 3}
    grid:
      - vary: {method: [erm], seed: [0]}
claims:""")
    p = _smk(_broken_paper_repo(tmp_path, exp), "-n", check=False)
    assert p.returncode != 0 and "epoch" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_a_claim_naming_an_unknown_method_fails_the_dry_run(tmp_path):
    exp = TINY.format(name="tinya", methods="erm, {name: mixup, alpha: 0.4}", method="mixupp")
    p = _smk(_broken_paper_repo(tmp_path, exp), "-n", check=False)
    assert p.returncode != 0 and "mixupp" in p.stderr and "papers/tinya" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_readme_states_the_two_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert blocks, "README has no command block"
    first = [line for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]
    assert len(first) == 2 and "snakemake" in first[0] and "pytest" in first[1]
    ci = (ROOT / ".ci/run").read_text()
    assert first[1].replace("pip install", "pip install -q") in ci or first[1] in ci


def test_tiny_paper_template_is_valid():
    # keep the embedded template honest: it must validate like any paper folder
    import yaml

    from common.config import expand_grid, validate

    exp = yaml.safe_load(textwrap.dedent(TINY.format(name="tinyz", methods="erm", method="erm")))
    validate(exp, "experiments.schema.json", "tiny")
    assert len(expand_grid(exp, "quick", "tiny")) == 1
