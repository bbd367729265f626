"""Code provenance: which modules compute a run, a digest of what the interpreter runs of them, the
runs the current code did not produce, and pins that accept them after an old-vs-new comparison.

``code_files(cfg)`` are the modules a run executes: the trainer (``common/train.py``) and the modules
registering the run's method, ``+term`` loss terms, model and dataset, with everything they import
inside ``common/`` and ``papers/``, found statically from the import statements (function-level
imports included) and the ``__init__.py`` of every package on the way. Registrations of other
papers, loaded by name at run time (``common.registry.load_plugins``), are not followed, nor is
``common.codehash`` itself (it only computes the digest the run records); ``timm:`` models and other
libraries are recorded by version in the provenance instead.

``code_digest(cfg)`` is a SHA-256 (16 hex characters) over each file's path and its syntax tree
without docstrings, written out the same way on every Python version: comments, docstrings, blank
lines and formatting never change it, and neither do edits to modules the run does not import
(``common/aggregate/``, ``benchmarks/``, another paper's method).

The trainer records the digest as ``provenance.code_digest`` in ``metrics.json`` and in every
checkpoint; a checkpoint is resumed only under the same digest. A committed run computed by other
code is accepted through ``results/<scale>/code_pins.json`` only after ``compare-and-pin`` has
trained a stated sample of the runs to pin with the old and the new code on this machine and found
every result identical; the file records that evidence:

    python -m common.codehash stale --scale cpu            # runs the current code did not produce
    python -m common.codehash compare-and-pin --scale cpu --base <git-rev>   # compare, then pin

The sample is one run per distinct (method, dataset, model) among the runs to pin (the first id in
sorted order), each shortened to ``--epochs`` epochs (default 1) on at most ``--train-size``
training samples (default 512, or one batch if that is larger) and ``--test-size`` test samples
(default 1000, where the test split is known to be larger); the comparison is ``metrics.json`` and
every ``epochs.jsonl`` row without provenance and timing. Metrics are bit-identical only on the
same CPU type (``common.fileio.hardware``), so both sides run here, with this interpreter.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository root (parent of common/)
TRAINER = "common.train"
PACKAGES = ("common", "papers")  # the project's own code; anything else is a library
PROVENANCE_ONLY = ("common.codehash",)  # imported by the trainer to record the digest; no part of a result
PINS_NAME = "code_pins.json"


# --------------------------------------------------------------------------- the modules a run executes
def _module_file(name: str, root: Path) -> Path | None:
    """``common/x.py`` or ``common/x/__init__.py`` for ``common.x`` under ``root``; None outside
    the project's packages or when no such file exists (an attribute, not a module)."""
    parts = name.split(".")
    if parts[0] not in PACKAGES or name in PROVENANCE_ONLY:
        return None
    base = root.joinpath(*parts)
    return next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)


def _parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``: the packages whose ``__init__`` runs before ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported_names(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """Every module name an import statement anywhere in ``tree`` may load (``from x import y``
    gives ``x`` and ``x.y``, as ``y`` may be a submodule); relative imports resolved against ``name``."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")[: max(0, len(package.split(".")) - node.level + 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _parse(path: Path, cache: dict) -> ast.Module:
    key = ("tree", path)
    if key not in cache:
        cache[key] = ast.parse(path.read_bytes(), filename=str(path))
    return cache[key]


def _closure(start: dict[str, Path], root: Path, cache: dict) -> dict[str, Path]:
    """{module name: file} of ``start`` and every project module they import, directly or not."""
    files: dict[str, Path] = {}
    todo = list(start.items())
    while todo:
        name, path = todo.pop()
        if name in files:
            continue
        files[name] = path
        imported = _imported_names(_parse(path, cache), name, path.name == "__init__.py")
        for other in sorted(imported | set(_parents(name))):
            f = _module_file(other, root)
            if f is not None and other not in files:
                todo.append((other, f))
    return files


def _names(cfg: dict) -> list[tuple[str, str]]:
    """(registry kind, name) of everything the run looks up by name."""
    def name(x):
        return x if isinstance(x, str) else x["name"]

    out = [("method", n) for n in str(name(cfg["method"])).split("+")]
    out.append(("dataset", name(cfg["dataset"])))
    model = name(cfg["model"])
    if not str(model).startswith("timm:"):
        out.append(("model", model))
    return out


def _registering_module(kind: str, name: str) -> str:
    from .data import DATASETS
    from .methods import METHODS
    from .models import MODELS

    reg = {"method": METHODS, "dataset": DATASETS, "model": MODELS}[kind]
    obj = reg.get(name)  # unknown names raise RegistryError listing the known ones
    return getattr(obj, "__module__", None) or "?"


def _start_modules(cfg: dict, root: Path) -> dict[str, Path]:
    """The trainer and the modules registering the run's names. A registering module outside the
    project (e.g. a test plugin) is taken from its own file."""
    start = {TRAINER: _module_file(TRAINER, root)}
    for kind, name in _names(cfg):
        mod = _registering_module(kind, name)
        f = _module_file(mod, root) or getattr(sys.modules.get(mod), "__file__", None)
        if f:
            start[mod] = Path(f)
    return start


def code_files(cfg: dict, root=None, _cache: dict | None = None) -> list[Path]:
    """The source files the run ``cfg`` executes, relative to ``root`` (default: the repository
    root; a file outside it stays absolute), sorted. ``_cache`` (one dict per pass over many runs)
    keeps each file parsed once."""
    root = Path(root).resolve() if root is not None else ROOT
    cache = {} if _cache is None else _cache
    key = ("files", root, tuple(_names(cfg)))
    if key not in cache:
        paths = {Path(p).resolve() for p in _closure(_start_modules(cfg, root), root, cache).values()}
        rel = {p.relative_to(root) if p.is_relative_to(root) else p for p in paths}
        cache[key] = sorted(rel, key=lambda p: p.as_posix())
    return cache[key]


# --------------------------------------------------------------------------- the digest
def _tree_data(node):
    """A syntax tree as plain data, the same on every Python version: each node's class name and
    the fields it sets (empty lists and None left out, as newer versions add such fields), no
    positions."""
    if isinstance(node, ast.AST):
        fields = ((f, _tree_data(getattr(node, f, None))) for f in node._fields)
        return (type(node).__name__, tuple((f, v) for f, v in fields if v not in (None, ())))
    if isinstance(node, list):
        return tuple(_tree_data(x) for x in node)
    return node


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:]
    return tree


def source_digest(source: bytes | str) -> str:
    """SHA-256 of what the interpreter runs of ``source``: its syntax tree without docstrings
    (comments and layout are not in the tree)."""
    tree = _without_docstrings(ast.parse(source))
    return hashlib.sha256(repr(_tree_data(tree)).encode()).hexdigest()


def _file_digest(path: Path, cache: dict) -> str:
    key = ("digest", path)
    if key not in cache:
        cache[key] = source_digest(path.read_bytes())
    return cache[key]


def code_digest(cfg: dict, root=None, _cache: dict | None = None) -> str:
    """SHA-256 (first 16 hex characters) over the relative paths and syntax trees of
    ``code_files(cfg, root)``; independent of the checkout's location, of file order, comments,
    docstrings and formatting."""
    root = Path(root).resolve() if root is not None else ROOT
    cache = {} if _cache is None else _cache
    h = hashlib.sha256()
    for rel in code_files(cfg, root, cache):
        h.update((rel.as_posix() if not rel.is_absolute() else f"<external>/{rel.name}").encode() + b"\0")
        h.update(_file_digest(root / rel, cache).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- recorded runs, pins, stale runs
def _recorded(metrics_path: Path) -> dict:
    """A run's metrics.json; an unreadable one is a ValueError naming it (never "other code")."""
    try:
        rec = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable (truncated?) metrics.json at {metrics_path}: {e}. Restore it "
                         f"(git checkout -- {metrics_path}) or delete it to train the run again") from None
    return rec if isinstance(rec, dict) else {}


def _recorded_config(rec: dict) -> dict | None:
    cfg = (rec.get("provenance") or {}).get("config")
    return cfg if isinstance(cfg, dict) else None


def pins_path(scale: str, root=".") -> Path:
    return Path(root) / "results" / scale / PINS_NAME


def read_pins(scale: str, root=".") -> dict:
    """``{"checks": [evidence, ...], "pins": {run_id: {"digest": ..., "check": index}}}`` of
    ``results/<scale>/code_pins.json`` (empty when absent); a malformed file is a ValueError naming it."""
    p = pins_path(scale, root)
    if not p.exists():
        return {"checks": [], "pins": {}}
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a valid JSON file ({e})") from None
    checks, pins = (doc.get("checks"), doc.get("pins")) if isinstance(doc, dict) else (None, None)
    ok = isinstance(checks, list) and isinstance(pins, dict) and all(
        isinstance(v, dict) and isinstance(v.get("digest"), str) and v.get("check") in range(len(checks))
        for v in pins.values())
    if not ok:
        raise ValueError(f"{p}: expected {{\"checks\": [...], \"pins\": {{run_id: {{\"digest\": ..., \"check\": i}}}}}} "
                         f"as written by `python -m common.codehash compare-and-pin` (a file of the older "
                         f"{{run_id: digest}} form records no evidence: delete it, then run compare-and-pin)")
    return doc


def stale_runs(scale: str, root, runs: dict) -> list[str]:
    """Run ids of ``runs`` ({run_id: run config}) whose ``results/<scale>/runs/<id>/metrics.json``
    exists but was neither produced by (``provenance.code_digest``) nor pinned to (``code_pins.json``)
    the current code digest of its config; a None config counts as stale. Sorted. Runs without
    metrics.json are not listed (they are simply missing); an unreadable metrics.json is a ValueError
    naming the file."""
    root = Path(root)
    pins, cache, stale = read_pins(scale, root)["pins"], {}, []
    for rid, cfg in runs.items():
        m = root / "results" / scale / "runs" / rid / "metrics.json"
        if not m.exists():
            continue
        produced = (_recorded(m).get("provenance") or {}).get("code_digest")
        if not isinstance(cfg, dict):  # no config: cannot be checked, so it is not trusted
            stale.append(rid)
            continue
        current = code_digest(cfg, root, cache)
        if produced != current and (pins.get(rid) or {}).get("digest") != current:
            stale.append(rid)
    return sorted(stale)


def _existing_runs(scale: str, root: Path) -> dict:
    """{run_id: recorded config, or None if metrics.json records none} of every run dir holding a
    metrics.json."""
    d = root / "results" / scale / "runs"
    return {m.parent.name: _recorded_config(_recorded(m)) for m in sorted(d.glob("*/metrics.json"))} if d.is_dir() else {}


# --------------------------------------------------------------------------- compare old and new code, then pin
TIMING_KEYS = ("train_secs", "train_images_per_sec")  # differ between identical runs
NOT_RESULT_KEYS = ("provenance", "run_id")
SAMPLE_RULE = "one run per distinct (method, dataset, model) among the runs to pin, the first id in sorted order"


def sample_runs(runs: dict) -> list[str]:
    """The default sample of ``runs`` ({run_id: config}): :data:`SAMPLE_RULE`."""
    first: dict = {}
    for rid in sorted(runs):
        cfg = runs[rid]
        first.setdefault((str(cfg["method"]["name"]), cfg["dataset"]["name"], cfg["model"]["name"]), rid)
    return sorted(first.values())


def shortened(cfg: dict, epochs: int, train_size: int, test_size: int) -> dict:
    """``cfg`` trained for ``epochs`` epochs (no warm-up or cool-down, step milestones at the end) on
    at most ``train_size`` training samples (or one batch, if larger) and evaluated on at most
    ``test_size`` test samples (each only where the dataset's split is known to be larger), one thread,
    the data root from ``$MIXREPRO_DATA``; everything else as recorded."""
    from .config import copy_data
    from .shortened import capped_sizes

    c = copy_data(cfg)
    t = c["train"]
    t.update(epochs=epochs, warmup_epochs=0, cooldown_epochs=0, eval_every=1, num_threads=1)
    t["milestones"] = [epochs] if t.get("schedule") == "step" else []
    c["dataset"] = {**capped_sizes(c["dataset"], max(train_size, t["batch_size"]), test_size), "root": None,
                    "download": False}
    return c


def _outcome(out: Path) -> dict:
    """What a run computed: metrics.json and every epochs.jsonl row without provenance and timing."""
    def drop(x):
        if isinstance(x, dict):
            return {k: drop(v) for k, v in x.items() if k not in TIMING_KEYS}
        return [drop(v) for v in x] if isinstance(x, list) else x

    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(x) for x in (out / "epochs.jsonl").read_text().splitlines() if x.strip()]
    return {"metrics": drop({k: v for k, v in metrics.items() if k not in NOT_RESULT_KEYS}), "epochs": drop(rows)}


def _outcome_digest(outcome: dict) -> str:
    return hashlib.sha256(json.dumps(outcome, sort_keys=True).encode()).hexdigest()[:16]


def _git(root: Path, *args: str) -> str:
    import subprocess

    p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if p.returncode:
        raise ValueError(f"git {' '.join(args)} in {root}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout.strip()


def _train(code: Path, cfg: dict, out: Path) -> dict:
    """Train ``cfg`` with the code checked out at ``code`` (this interpreter); its outcome. Both sides
    share one data cache (``$MIXREPRO_CACHE``, else this checkout's ``data/cache``), never the data root."""
    import os
    import subprocess

    cache = os.environ.get("MIXREPRO_CACHE") or str(ROOT / "data" / "cache")
    env = {**os.environ, "PYTHONPATH": str(code), "MIXREPRO_CACHE": cache, "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "common.train", "--config-json", json.dumps(cfg, sort_keys=True),
           "--out", str(out / "run"), "--ckpt-dir", str(out / "ckpt")]
    p = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    if p.returncode:
        raise ValueError(f"training with the code at {code} failed (exit {p.returncode}): {p.stderr.strip()[-1500:]}")
    return _outcome(out / "run")


def compare_and_pin(scale: str, root, base: str, epochs: int = 1, train_size: int = 512, test_size: int = 1000,
                    sample: list[str] | None = None, log=print) -> list[str]:
    """Pin every stale run of ``results/<scale>`` to the current code digest if the sample trains to
    identical results with the code of git revision ``base`` and the code at ``root``; returns the
    sampled run ids whose results differ (nothing is pinned then). Raises ValueError on anything
    that prevents the comparison (no git, a failed run, a run without a recorded config)."""
    import tempfile

    from .fileio import atomic_write_json, git_commit, hardware

    root = Path(root).resolve()
    runs = _existing_runs(scale, root)
    to_pin = stale_runs(scale, root, runs)
    unpinnable = [r for r in to_pin if runs[r] is None]
    if unpinnable:
        raise ValueError(f"no config recorded in the metrics.json of {', '.join(unpinnable)}: retrain them")
    if not to_pin:
        log(f"nothing to pin: every run under {root / 'results' / scale / 'runs'} was computed by the current code")
        return []
    unknown = sorted(set(sample or ()) - set(runs))
    if unknown:
        raise ValueError(f"--sample: no run {', '.join(unknown)} under {root / 'results' / scale / 'runs'}")
    chosen = sorted(sample) if sample else sample_runs({r: runs[r] for r in to_pin})
    shortening = {"train.epochs": epochs, "dataset.train_size": f"at most {train_size} (or one batch)",
                  "dataset.test_size": f"at most {test_size}"}
    log(f"{len(to_pin)} run(s) to pin; comparing {len(chosen)} ({'given' if sample else SAMPLE_RULE}), "
        f"shortened to {shortening}: {', '.join(chosen)}")
    base_commit = _git(root, "rev-parse", "--verify", f"{base}^{{commit}}")
    results, differ = {}, []
    with tempfile.TemporaryDirectory(prefix="compare-and-pin-") as tmp:
        old_code = Path(tmp) / "base"
        _git(root, "worktree", "add", "--detach", str(old_code), base_commit)
        try:
            for rid in chosen:
                cfg = shortened(runs[rid], epochs, train_size, test_size)
                old, new = (_train(code, cfg, Path(tmp) / side / rid) for code, side in ((old_code, "old"), (root, "new")))
                results[rid] = _outcome_digest(new)
                if old != new:
                    differ.append(rid)
                log(f"  {rid}: {'identical' if old == new else 'DIFFERENT'}")
        finally:
            _git(root, "worktree", "remove", "--force", str(old_code))
    if differ:
        return differ
    pins = read_pins(scale, root)
    pins["checks"].append({
        "base": base_commit, "head": git_commit(root), "python": sys.version.split()[0], "hardware": hardware(),
        "sample_rule": "given on the command line" if sample else SAMPLE_RULE,
        "shortening": shortening, "results": results})
    cache = {}
    pins["pins"].update({rid: {"digest": code_digest(runs[rid], root, cache), "check": len(pins["checks"]) - 1}
                         for rid in to_pin})
    atomic_write_json(pins_path(scale, root), _referenced_checks_only(pins))
    log(f"pinned {len(to_pin)} run(s) in {pins_path(scale, root)}")
    return []


def _referenced_checks_only(pins: dict) -> dict:
    """The pin file without the evidence no pin refers to any more (checks renumbered)."""
    used = sorted({p["check"] for p in pins["pins"].values()})
    new_index = {old: i for i, old in enumerate(used)}
    return {"checks": [pins["checks"][i] for i in used],
            "pins": {rid: {**p, "check": new_index[p["check"]]} for rid, p in sorted(pins["pins"].items())}}


# --------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.codehash", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_stale = sub.add_parser("stale", help="print the run ids the current code did not produce and that are not pinned")
    p_pin = sub.add_parser("compare-and-pin", help="train a sample of the stale runs with the old and the new code; "
                                                   "pin every stale run if all results are identical")
    for p in (p_stale, p_pin):
        p.add_argument("--scale", required=True)
        p.add_argument("--root", default=".", help="repository root holding results/ and the new code (default: .)")
    p_pin.add_argument("--base", required=True, help="git revision of the old code (e.g. the commit before the change)")
    p_pin.add_argument("--sample", nargs="+", metavar="RUN_ID", help=f"compare these runs (default: {SAMPLE_RULE})")
    p_pin.add_argument("--epochs", type=int, default=1, help="epochs of each shortened run (default: 1)")
    p_pin.add_argument("--train-size", type=int, default=512, help="training samples of each shortened run (default: 512)")
    p_pin.add_argument("--test-size", type=int, default=1000, help="test samples of each shortened run (default: 1000)")
    args = ap.parse_args(argv)
    from .registry import RegistryError

    root = Path(args.root)
    try:
        if args.cmd == "stale":
            for rid in stale_runs(args.scale, root, _existing_runs(args.scale, root)):
                print(rid)
            return 0
        differ = compare_and_pin(args.scale, root, args.base, args.epochs, args.train_size, args.test_size, args.sample)
    except (ValueError, RegistryError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if differ:
        print(f"error: the old and the new code give different results for {', '.join(differ)}: nothing pinned; "
              f"let the workflow retrain the stale runs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
