"""Loading: runs' metrics.json (+ epochs.jsonl), a paper's reported.csv, Snakemake benchmark files.

A run dict has ``path``, ``dir``, ``metrics``, ``config``, ``epochs``, ``task`` and, after labelling,
``setting`` (a hash of everything in the config but seed, method and runtime keys), ``dataset``,
``model`` and ``label`` (the method name plus the params that distinguish same-named variants within
one setting).
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import pandas as pd

REPORTED_COLUMNS = ["paper", "method", "dataset", "model", "epochs", "metric", "value", "baseline_method",
                    "baseline_value", "source"]


def load_reported(path) -> pd.DataFrame:
    """Read and check a paper's reported.csv (``None`` or a missing file: no rows); a malformed row is named
    by its line number.

    ``value`` and ``baseline_value`` must be finite numbers. ``baseline_value`` may be empty (the source gives
    no baseline figure); ``nan`` or an empty ``value`` only on a row whose ``source`` starts with UNVERIFIED
    (a figure that could not be read), where they mean "no figure". An infinite value is always an error:
    it would be published as the paper's number."""
    if path is None or not Path(path).exists():
        return pd.DataFrame(columns=REPORTED_COLUMNS + ["verified"])
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != REPORTED_COLUMNS:
        raise ValueError(f"{path}: header must be {','.join(REPORTED_COLUMNS)}; got {','.join(rows[0]) if rows else '(empty)'}")
    out = []
    for i, r in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in r):
            continue
        if len(r) != len(REPORTED_COLUMNS):
            raise ValueError(f"{path}, line {i}: expected {len(REPORTED_COLUMNS)} columns, got {len(r)}")
        d = dict(zip(REPORTED_COLUMNS, r))
        if not d["source"].strip():
            raise ValueError(f"{path}, line {i}: column 'source' is empty (every figure needs its source)")
        d["verified"] = not d["source"].strip().upper().startswith("UNVERIFIED")
        for col in ("value", "baseline_value"):
            d[col] = _reported_number(d[col], col, d["verified"], f"{path}, line {i}")
        out.append(d)
    return pd.DataFrame(out, columns=REPORTED_COLUMNS + ["verified"])


def _reported_number(cell: str, col: str, verified: bool, where: str) -> float | None:
    """One figure of reported.csv: a finite number; None for an empty ``baseline_value`` (no baseline figure);
    NaN (no figure) for ``nan`` or an empty ``value`` on an UNVERIFIED row only."""
    text = cell.strip()
    if text == "" and col == "baseline_value":
        return None
    try:
        x = float(text) if text else math.nan
    except ValueError:
        raise ValueError(f"{where}: column {col!r} must be a number, got {cell!r}") from None
    if math.isinf(x):
        raise ValueError(f"{where}: column {col!r} is {cell!r}; a figure must be a finite number")
    if math.isnan(x) and verified:
        shown = repr(cell) if text else "empty"
        raise ValueError(f"{where}: column {col!r} is {shown}; only a row whose source starts with "
                         "UNVERIFIED may leave a figure out (nan)")
    return x


def _read_json(path: Path, what: str):
    """Parsed JSON of a run file; a truncated or unreadable file is an error naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the run's {what} ({e}); rerun the run or restore the file") from None


def load_runs(paths) -> list[dict]:
    """Run dicts of the given metrics.json paths (a path listed twice counts once), labelled."""
    runs, seen = [], set()
    for p in paths:
        p = Path(p)
        if p.resolve() in seen:
            continue
        seen.add(p.resolve())
        m = _read_json(p, "metrics")
        try:
            cfg, task = m["provenance"]["config"], m["task"]
        except (KeyError, TypeError):
            raise ValueError(f"{p}: not a run's metrics.json (no task or provenance.config)") from None
        ep_path = p.parent / "epochs.jsonl"
        epochs = _read_epochs(ep_path) if ep_path.exists() else []
        runs.append({"path": p, "dir": p.parent, "metrics": m, "config": cfg, "epochs": epochs, "task": task})
    _label(runs)
    return runs


def _read_epochs(path: Path) -> list[dict]:
    """The rows of a run's epochs.jsonl; an unreadable row is an error naming the file and line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the run's epoch log ({e})") from None
    rows = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {i}: not a JSON row ({e}); rerun the run or restore the file") from None
    return rows


def flat(d: dict, prefix="") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: config keys that do not make a setting: top-level blocks, and runtime keys of the dataset block
NOT_SETTING = ("seed", "method", "resources")
DATASET_RUNTIME = ("root", "download")


def varying_keys(flats: list[dict], keys) -> list[str]:
    """The dotted ``keys`` whose value is not the same in every flat dict of ``flats``."""
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]


def setting_config(config: dict) -> dict:
    """The part of a run config that makes its setting: all but seed, method and runtime keys (shallow
    copies of the top level and the dataset block; deeper blocks are shared with ``config``)."""
    c = {k: v for k, v in config.items() if k not in NOT_SETTING}
    c["dataset"] = {k: v for k, v in c["dataset"].items() if k not in DATASET_RUNTIME}
    return c


def setting_id(config: dict, seed_linked=()) -> str:
    """Six hex digits naming a run's setting (:func:`setting_config`) without the dotted ``seed_linked``
    keys (keys that hold the run's seed, such as a split drawn per seed: runs that differ only there form
    one setting)."""
    c = setting_config(config)
    for key in seed_linked:  # dropped from copies of the dicts on its path: the run's config is left as it is
        *parents, last = key.split(".")
        node = c
        for p in parents:
            child = node.get(p) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                node = None
                break
            node[p] = node = dict(child)
        if isinstance(node, dict):
            node.pop(last, None)
    text = json.dumps(c, sort_keys=True, default=str)
    if seed_linked:
        text += "|seed-linked:" + ",".join(seed_linked)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def seed_linked_ok(run: dict, seed_linked) -> bool:
    """Whether every dotted key of ``seed_linked`` holds the run's seed."""
    if not seed_linked:
        return True
    f = flat(run["config"])
    return all(f.get(k) == run["config"].get("seed") for k in seed_linked or ())


def _label(runs: list[dict]) -> None:
    for r in runs:
        r["setting"] = setting_id(r["config"])
        r["dataset"] = r["config"]["dataset"]["name"]
        r["model"] = r["config"]["model"]["name"].replace("timm:", "")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["config"]["method"]["name"], r["setting"]), []).append(r)
    for (name, _), rs in groups.items():
        flats = [flat({k: v for k, v in r["config"]["method"].items() if k != "name"}) for r in rs]
        keys = sorted({k for f in flats for k in f})
        varying = varying_keys(flats, keys)
        for r, f in zip(rs, flats):
            extra = ",".join(f"{k}={f.get(k)}" for k in varying)
            r["label"] = f"{name}({extra})" if extra else name


def matches(run: dict, match: dict | None) -> bool:
    """Whether the run's config has every dotted ``key: value`` of ``match``."""
    f = flat(run["config"])
    return all(f.get(k) == v for k, v in (match or {}).items())


def scalar_metrics(run: dict) -> dict:
    """The run's final test metrics, its training throughput and its best-epoch metrics
    (``best_epoch_<name>``)."""
    out = {k: v for k, v in run["metrics"]["test"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    ips = run["metrics"].get("train_images_per_sec")
    if ips:
        out["train_images_per_sec"] = ips
    best = run["metrics"].get("best_epoch_test") or {}
    for k, v in best.items():
        if k != "epoch" and isinstance(v, (int, float)):
            out[f"best_epoch_{k.replace('test_', '')}"] = v
    return out


def read_benchmark_files(folder) -> pd.DataFrame:
    """Snakemake's per-run benchmark files ``<folder>/<run_id>.tsv`` (``benchmark:`` directive), one row
    per file (its last line): run_id, s, cpu_time, max_rss. Unreadable files are skipped."""
    folder = Path(folder)
    rows = []
    for f in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        try:
            df = pd.read_csv(f, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError):
            continue
        if df.empty or "s" not in df.columns:
            continue
        last = df.iloc[-1]
        rows.append({"run_id": f.stem, "s": float(last["s"]),
                     "cpu_time": float(last.get("cpu_time", float("nan"))),
                     "max_rss": float(last.get("max_rss", float("nan")))})
    return pd.DataFrame(rows, columns=["run_id", "s", "cpu_time", "max_rss"])
