"""Helpers of the workflow tests (test_workflow.py, test_workflow_repo.py): throw-away copies of the
repository with tiny paper folders, and Snakemake run as a subprocess."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY = """\
paper: {name}
title: "Tiny test paper"
scales:
  quick:
    defaults:
      dataset: {{name: digits, val_size: 100}}
      model: {{name: mlp, hidden: [32]}}
      train: {{epochs: 2, batch_size: 128, lr: 0.05}}
      eval: {{occlusion: null}}
    grid:
      - vary: {{method: [{methods}], seed: [0]}}
claims:
  - id: {name}_claim
    text: "{name}: method beats erm"
    metric: top1
    method: {method}
    baseline: erm
"""

NEW_METHOD = '''\
"""A test-only method: mixup with lambda fixed at 0.9 (no edit to common/ needed)."""
from common.methods import Method, MixInfo, StepOutput, register_method
from common.mixing import mix_inputs, pair_indices


@register_method("fixmix_test")
class FixMix(Method):
    def step(self, model, batch, state):
        perm = pair_indices(batch.x.shape[0], state.generator)
        out = model(mix_inputs(batch.x, perm, 0.9))
        y_b = batch.y[perm]
        return StepOutput(self.mixed_loss(out, batch.y, y_b, 0.9), out, MixInfo(batch.y, y_b, 0.9, perm))
'''


def _copy_repo(dst: Path) -> Path:
    """The workflow and the core, plus papers/mixup as a plugin package only (no experiments.yaml), so
    the only papers are the tiny ones the tests add."""
    for name in ("Snakefile", "workflow", "common", "config", "profiles", "environment.yml", "README.md", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, dst / name)
    (dst / "papers").mkdir()
    shutil.copy(ROOT / "papers" / "__init__.py", dst / "papers" / "__init__.py")
    shutil.copytree(ROOT / "papers" / "mixup", dst / "papers" / "mixup",
                    ignore=shutil.ignore_patterns("__pycache__", "experiments.yaml", "reported.csv"))
    return dst


CROSS_TABLE = '''\
from pathlib import Path


def make_tables(paths, out_dir):
    Path(out_dir, "n_runs.txt").write_text(str(len(paths)))
    Path(out_dir, "n_runs.md").write_text(str(len(paths)) + " runs")  # shown in the report
'''


def _add_paper(repo: Path, name: str, methods: str, method: str, code: str | None = None) -> None:
    d = repo / "papers" / name
    d.mkdir()
    (d / "__init__.py").write_text("from . import method  # noqa: F401\n" if code else "")
    if code:
        (d / "method.py").write_text(code)
    (d / "experiments.yaml").write_text(TINY.format(name=name, methods=methods, method=method))
    (d / "README.md").write_text(f"# {name}\n\n<!-- BEGIN generated:quick -->\n<!-- END generated:quick -->\n")


def _smk(repo: Path, *args: str, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run(SNAKEMAKE + list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def _jobs(dry_run_output: str) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    counts = {}
    m = re.search(r"Job stats:\n(.*?)\n\n", dry_run_output, re.S)
    if not m:
        return counts
    for line in m.group(1).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def _planned(out: str, rule: str) -> list[str]:
    """Output paths of the jobs of `rule` in a dry run's listing."""
    return re.findall(rf"rule {rule}:\n(?:    .*\n)*?    output: ([^\n]+)", out)
