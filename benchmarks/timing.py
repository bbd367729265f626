"""Interleaved timing, ratio statistics, result rows and machine provenance.

Each variant is a zero-argument callable doing one *unit* of work (one training step, one batch,
one mixing call). :func:`interleave` runs all variants once per round, in a new random order
every round, and records per-unit time on two clocks:

* ``cpu``  — this process's CPU time (``time.process_time``). With one intra-op thread this is
  the work the variant does, barely affected by other processes competing for the cores: the
  primary clock of every section except the thread-count trial;
* ``wall`` — ``time.perf_counter``; recorded alongside (and primary for the thread trial, where
  CPU time would count every thread's spinning).

A ratio is computed *within* each round (variant / baseline) and the median over rounds is
reported with the inter-quartile range of the per-round ratios.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from common.fileio import cpu_info

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}

#: CSV columns, in order (tests/test_benchmarks.py checks them)
COLUMNS = [
    "section", "name", "model", "variant", "baseline", "clock", "repeats", "unit",
    "variant_s", "baseline_s", "ratio", "ratio_q25", "ratio_q75", "ratio_wall", "overhead_pct",
    "variant_images_per_s", "baseline_images_per_s", "target", "target_ratio_max", "target_met",
    "status", "note",
]


@dataclass
class Timings:
    """Per-round, per-unit seconds of each variant on both clocks."""

    cpu: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)

    def clock(self, name: str) -> dict[str, list[float]]:
        return self.cpu if name == "cpu" else self.wall

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.cpu.values()), default=0)


def interleave(fns: dict[str, Callable[[], object]], rounds: int, inner: int | dict[str, int] = 1,
               warmup: int = 1, before: dict[str, Callable[[], object]] | None = None, seed: int = 0) -> Timings:
    """Time every variant ``inner`` units per round for ``rounds`` rounds, interleaved.

    The order is a fresh (seeded) random permutation each round, so no variant systematically
    runs first or right after a given other one. ``before[name]()`` (untimed) runs before each
    of that variant's blocks (e.g. to set the thread count)."""
    import random

    rng = random.Random(seed)
    names = list(fns)
    before = before or {}
    t = Timings({n: [] for n in names}, {n: [] for n in names})
    for n in names:
        if n in before:
            before[n]()
        for _ in range(warmup):
            fns[n]()
    for _ in range(rounds):
        order = names[:]
        rng.shuffle(order)
        gc.collect()
        for n in order:
            reps = inner.get(n, 1) if isinstance(inner, dict) else inner
            if n in before:
                before[n]()
            f = fns[n]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(reps):
                f()
            c1, w1 = time.process_time(), time.perf_counter()
            t.cpu[n].append((c1 - c0) / reps)
            t.wall[n].append((w1 - w0) / reps)
    return t


def quantiles(xs: list[float]) -> tuple[float, float, float]:
    """(q25, median, q75) with linear interpolation; a single value gives it thrice."""
    xs = sorted(x for x in xs if math.isfinite(x))
    if not xs:
        return (math.nan,) * 3
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def ratio_summary(t: Timings, variant: str, baseline: str, clock: str = "cpu") -> dict:
    """Median (and IQR) over rounds of the per-round ratio variant / baseline."""
    out = {}
    for c in ("cpu", "wall"):
        v, b = t.clock(c)[variant], t.clock(c)[baseline]
        ratios = [a / d for a, d in zip(v, b) if d > 0]
        q25, med, q75 = quantiles(ratios)
        out[c] = {"ratio": med, "q25": q25, "q75": q75, "variant_s": statistics.median(v),
                  "baseline_s": statistics.median(b), "repeats": len(ratios)}
    s = dict(out[clock])
    s["ratio_wall"] = out["wall"]["ratio"]
    s["clock"] = clock
    return s


def make_row(section: str, name: str, model: str, variant: str, baseline: str, s: dict | None, *,
             unit: str = "step", images: int | None = None, target: str = "", target_ratio_max: float | None = None,
             status: str = "ok", note: str = "") -> dict:
    """One CSV row from a :func:`ratio_summary` (``s=None`` for skipped / failed entries)."""
    row = {c: "" for c in COLUMNS}
    row.update(section=section, name=name, model=model, variant=variant, baseline=baseline, unit=unit,
               target=target, status=status, note=note)
    nan = math.nan
    row.update(variant_s=nan, baseline_s=nan, ratio=nan, ratio_q25=nan, ratio_q75=nan, ratio_wall=nan,
               overhead_pct=nan, variant_images_per_s=nan, baseline_images_per_s=nan, repeats=0,
               target_ratio_max=nan if target_ratio_max is None else float(target_ratio_max), target_met="")
    if s is not None:
        row.update(clock=s["clock"], repeats=int(s["repeats"]), variant_s=s["variant_s"], baseline_s=s["baseline_s"],
                   ratio=s["ratio"], ratio_q25=s["q25"], ratio_q75=s["q75"], ratio_wall=s.get("ratio_wall", nan),
                   overhead_pct=100.0 * (s["ratio"] - 1.0))
        if images:
            row["variant_images_per_s"] = images / s["variant_s"] if s["variant_s"] > 0 else nan
            row["baseline_images_per_s"] = images / s["baseline_s"] if s["baseline_s"] > 0 else nan
        if target_ratio_max is not None and math.isfinite(s["ratio"]):
            row["target_met"] = bool(s["ratio"] <= target_ratio_max)
    return row


def skipped_row(section: str, name: str, model: str, variant: str, baseline: str, status: str, note: str) -> dict:
    return make_row(section, name, model, variant, baseline, None, status=status, note=note)


# --------------------------------------------------------------------------- provenance
def machine_info(threads: int) -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("torch", "torchvision", "timm", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "absent"
    model, flags = cpu_info()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "benchmarks", "common", "papers"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        paths = sorted({ln[3:].strip() for ln in dirty if ln.strip()})
        if paths and commit != "unknown":
            commit += " + uncommitted " + ", ".join(paths[:6]) + (f" (+{len(paths) - 6} more)" if len(paths) > 6 else "")
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "isa": ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "n/a",
        "torch": versions["torch"], "torchvision": versions["torchvision"], "timm": versions["timm"],
        "numpy": versions["numpy"], "python": platform.python_version(),
        "threads": threads, "interop_threads": torch.get_num_interop_threads(),
        "load_avg_start": round(os.getloadavg()[0], 2),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "git_commit": commit,
    }
