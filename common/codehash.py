"""Code provenance: which source files compute a run, and a digest of them.

``code_digest(cfg)`` is a SHA-256 (16 hex characters) over the relative paths and contents of
``code_files(cfg)``: the core's training modules (every ``common/**/*.py`` except the
aggregation/reporting code) plus every ``.py`` file of each paper package that registers the
run's method, its ``+term`` loss terms, its model and its dataset (and of the paper packages
those import), minus ``plots.py`` / ``tables.py``. ``timm:`` models count as core (library
versions are recorded separately in the provenance). Line endings are normalised, so a
checkout with CRLF files gives the same digest.

The trainer records the digest as ``provenance.code_digest`` in ``metrics.json`` and in every
checkpoint; a checkpoint is resumed only under the same digest. A committed run whose
``metrics.json`` predates the field, or was produced before a refactor that does not change
behaviour, is accepted through ``results/<scale>/code_pins.json`` (``{run_id: code_digest}``):

    python -m common.codehash stale --scale cpu        # runs the current code did not produce
    python -m common.codehash pin --scale cpu [RUN_ID ...]   # accept them as they are

Pin only after checking that the change does not alter any number (e.g. run a few configs with the
old and the new code on one machine and compare: metrics are bit-identical only on the same CPU
type, see ``common.fileio.hardware``); otherwise let the workflow rerun the stale runs.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository root (parent of common/)

# common/ modules that only aggregate, report or plot finished runs (not part of training)
_NOT_TRAINING = ("common/aggregate.py", "common/aggregate/", "common/recipe.py", "common/codehash.py")
_PAPER_NOT_TRAINING = ("plots.py", "tables.py")
PINS_NAME = "code_pins.json"


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def _py_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]


def _core_files(root: Path) -> set[str]:
    out = set()
    for p in _py_files(root / "common"):
        rel = _rel(p, root)
        if not any(rel == x or (x.endswith("/") and rel.startswith(x)) for x in _NOT_TRAINING):
            out.add(rel)
    return out


def _paper_files(pkg: str, root: Path) -> set[str]:
    folder = root / "papers" / pkg
    return {_rel(p, root) for p in _py_files(folder)
            if not (p.parent == folder and p.name in _PAPER_NOT_TRAINING)}


def _imported_papers(rel: str, root: Path) -> set[str]:
    """Paper packages a paper module imports (``papers.x...`` absolute or ``..x`` relative)."""
    try:
        tree = ast.parse((root / rel).read_bytes(), filename=rel)
    except (SyntaxError, ValueError):
        return set()
    own = rel.split("/")[1]
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif node.level >= 2 and node.module:  # from ..other import x (inside papers/<pkg>/)
                names = ["papers." + node.module]
        for n in names:
            parts = n.split(".")
            if parts[0] == "papers" and len(parts) > 1 and parts[1] != own:
                found.add(parts[1])
    return found


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


def code_files(cfg: dict, root=None, _cache: dict | None = None) -> list[Path]:
    """The source files that compute the run ``cfg``, as paths relative to ``root`` (default: the
    repository root), sorted. A module outside ``common/`` and ``papers/`` (e.g. a test plugin)
    contributes its own file (absolute if it lies outside ``root``). ``_cache`` (one dict per pass
    over many runs) keeps each paper file's imports once parsed."""
    root = Path(root).resolve() if root is not None else ROOT
    files = _core_files(root)
    todo, seen = [], set()
    extra: set[Path] = set()
    for kind, name in _names(cfg):
        mod = _registering_module(kind, name)
        parts = mod.split(".")
        if parts[0] == "common":
            continue
        if parts[0] == "papers" and len(parts) > 1:
            todo.append(parts[1])
            continue
        f = getattr(sys.modules.get(mod), "__file__", None)
        if f:
            f = Path(f).resolve()
            extra.add(Path(_rel(f, root)) if f.is_relative_to(root) else f)
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        pf = _paper_files(pkg, root)
        files |= pf
        for rel in pf:
            found = _cache.get(("imports", rel)) if _cache is not None else None
            if found is None:
                found = _imported_papers(rel, root)
                if _cache is not None:
                    _cache[("imports", rel)] = found
            todo.extend(found - seen)
    return sorted({Path(f) for f in files} | extra, key=lambda p: p.as_posix())


def _file_hash(path: Path, cache: dict | None) -> bytes:
    if cache is not None and path in cache:
        return cache[path]
    h = hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).digest()
    if cache is not None:
        cache[path] = h
    return h


def code_digest(cfg: dict, root=None, _cache: dict | None = None) -> str:
    """SHA-256 (first 16 hex characters) over the relative paths and contents of
    ``code_files(cfg, root)``; independent of the checkout's location and of file order."""
    root = Path(root).resolve() if root is not None else ROOT
    files_key = ("files", tuple(_names(cfg)))
    if _cache is not None and files_key in _cache:
        files = _cache[files_key]
    else:
        files = code_files(cfg, root, _cache)
        if _cache is not None:
            _cache[files_key] = files
    h = hashlib.sha256()
    for rel in files:
        key = rel.as_posix() if not rel.is_absolute() else f"<external>/{rel.name}"
        h.update(key.encode() + b"\0")
        h.update(_file_hash(root / rel, _cache))
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- pins
def pins_path(scale: str, root=".") -> Path:
    return Path(root) / "results" / scale / PINS_NAME


def read_pins(scale: str, root=".") -> dict:
    p = pins_path(scale, root)
    if not p.exists():
        return {}
    try:
        pins = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a valid JSON file ({e})") from None
    if not isinstance(pins, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pins.items()):
        raise ValueError(f"{p}: expected a mapping run_id -> code digest (strings)")
    return pins


def _recorded(metrics_path: Path) -> dict | None:
    try:
        return json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def stale_runs(scale: str, root, runs: dict) -> list[str]:
    """Run ids of ``runs`` ({run_id: run config}) whose ``results/<scale>/runs/<id>/metrics.json``
    exists but was neither produced by (``provenance.code_digest``) nor pinned to (``code_pins.json``)
    the current code digest of its config; unreadable metrics (or a None config) count as stale.
    Sorted. Runs without metrics.json are not listed (they are simply missing)."""
    root = Path(root)
    pins, cache, stale = read_pins(scale, root), {}, []
    for rid, cfg in runs.items():
        m = root / "results" / scale / "runs" / rid / "metrics.json"
        if not m.exists():
            continue
        rec = _recorded(m)
        if not isinstance(cfg, dict):  # no config recorded: cannot be checked, so it is not trusted
            stale.append(rid)
            continue
        current = code_digest(cfg, root, cache)
        produced = ((rec or {}).get("provenance") or {}).get("code_digest") if isinstance(rec, dict) else None
        if rec is None or (produced != current and pins.get(rid) != current):
            stale.append(rid)
    return sorted(stale)


def _existing_runs(scale: str, root: Path) -> dict:
    """{run_id: recorded config, or None if metrics.json is unreadable or has none} of every run dir
    holding a metrics.json."""
    runs = {}
    d = root / "results" / scale / "runs"
    for m in sorted(d.glob("*/metrics.json")) if d.is_dir() else []:
        rec = _recorded(m)
        cfg = ((rec or {}).get("provenance") or {}).get("config") if isinstance(rec, dict) else None
        runs[m.parent.name] = cfg if isinstance(cfg, dict) else None  # None: unreadable or no config
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.codehash", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_pin = sub.add_parser("pin", help="pin runs to the current code digest of their config")
    p_stale = sub.add_parser("stale", help="print the run ids the current code did not produce and that are not pinned")
    for p in (p_pin, p_stale):
        p.add_argument("--scale", required=True)
        p.add_argument("--root", default=".", help="repository root holding results/ (default: .)")
    p_pin.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="default: every run under results/<scale>/runs/")
    args = ap.parse_args(argv)
    from .fileio import atomic_write_json
    from .registry import RegistryError

    root = Path(args.root)
    try:
        runs = _existing_runs(args.scale, root)
        if args.cmd == "stale":
            for rid in stale_runs(args.scale, root, runs):
                print(rid)
            return 0
        if args.run_ids:
            missing = [r for r in args.run_ids if runs.get(r) is None]
            if missing:
                where = root / "results" / args.scale / "runs"
                print(f"error: no readable metrics.json for run(s) {', '.join(missing)} under {where}", file=sys.stderr)
                return 2
            pins = read_pins(args.scale, root)
            selected = {r: runs[r] for r in args.run_ids}
        else:
            pins, selected = {}, {r: c for r, c in runs.items() if c is not None}
        cache = {}
        pins.update({rid: code_digest(cfg, root, cache) for rid, cfg in selected.items()})
        atomic_write_json(pins_path(args.scale, root), pins)
        print(f"pinned {len(selected)} run(s) in {pins_path(args.scale, root)}")
        return 0
    except (ValueError, RegistryError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
