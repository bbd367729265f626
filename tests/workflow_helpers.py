"""Helpers of the workflow tests (test_workflow.py, test_workflow_repo.py): throw-away copies of the
repository with tiny paper folders, and Snakemake run as a subprocess."""
from __future__ import annotations

import hashlib
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
    """Snakemake in ``repo``; Python writes no bytecode caches there (a dry run must write nothing)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1",
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


def tree_state(root: Path, skip=(".git", ".snakemake")) -> dict[str, tuple[int, int, str]]:
    """``{path: (size, mtime_ns, sha256)}`` of every file under ``root`` but the top-level folders ``skip``
    (git's and Snakemake's own state: Snakemake creates .snakemake/ and writes its iocache there even in a
    dry run)."""
    state = {}
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if rel.parts[0] in skip or not f.is_file():
            continue
        state[str(rel)] = (f.stat().st_size, f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return state


#: installed as sitecustomize.py (on PYTHONPATH) by the tests that record which files an aggregate job
#: opens: in a process started as ``python -m common.aggregate ...`` or ``python -m common.freshness ...``
#: every ``open`` audit event is kept, and written to $MIXREPRO_AUDIT_OPEN/<pid>.json at exit
AUDIT_OPEN = """\
import atexit, json, os, sys

_DIR = os.environ.get("MIXREPRO_AUDIT_OPEN")
if _DIR and sys.orig_argv[1:3] in (["-m", "common.aggregate"], ["-m", "common.freshness"]):
    _opened = []

    def _hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            _opened.append([os.path.abspath(os.fsdecode(args[0])), args[1], args[2]])

    def _dump():
        record = json.dumps({"argv": sys.orig_argv, "opened": list(_opened)})
        with open(os.path.join(_DIR, f"{os.getpid()}.json"), "w") as f:
            f.write(record)

    sys.addaudithook(_hook)
    atexit.register(_dump)
"""


def files_read(opened: list, root: Path) -> set[str]:
    """The files under ``root`` a job opened for reading (relative paths), but its program: Python sources
    and everything under common/ (the aggregation code and its schemas). A paper's figure and table hooks
    (papers/<paper>/plots.py, tables.py) are inputs, not program."""
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
    out = set()
    for path, mode, flags in opened:
        if (mode is not None and set(str(mode)) & set("wax+")) or (mode is None and flags & write):
            continue
        p = Path(path)
        if root not in p.parents or not p.is_file():
            continue
        rel = p.relative_to(root)
        hook = rel.parts[0] == "papers" and rel.name in ("plots.py", "tables.py")
        if rel.parts[0] == "common" or (rel.suffix in (".py", ".pyc") and not hook):
            continue
        out.add(str(rel))
    return out


def dry_run_jobs(out: str) -> list[dict]:
    """``{"rule", "input", "output"}`` (lists of paths) of every job of a dry run's listing."""
    jobs = []
    for m in re.finditer(r"^rule (\w+):\n((?:    .*\n)*)", out, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m.group(2), re.M))
        jobs.append({"rule": m.group(1), "input": fields.get("input", "").split(", ") if fields.get("input") else [],
                     "output": fields.get("output", "").split(", ") if fields.get("output") else []})
    return jobs
