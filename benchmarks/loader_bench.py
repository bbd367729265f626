"""Throughput of the file-based ImageNet train path (:mod:`common.loader`) per DataLoader worker
count, against decoding alone, and the workers an A100-class ResNet-50 step needs.

    python -m benchmarks.loader_bench --out results/bench          # ~3-4 min on 2 cores
    python -m benchmarks.loader_bench --out /tmp/lb --quick         # smoke test (< 1 min)

Writes ``loader.csv`` (one row per pipeline x worker count and round-median ratios) and
``loader_README_section.md`` into ``--out``.

* Data: ``--images`` synthetic 500x375 JPEGs (ImageNet's typical size; smooth random colour fields
  plus noise, quality 90, deterministic from the image index) in a temporary ImageFolder.
* Baseline: decoding alone, ``PIL.Image.open(f).convert("RGB")`` over the same files in this process.
* Variants: the DeiT train transform (bicubic RandomResizedCrop-224, flip, RandAugment
  ``rand-m9-mstd0.5-inc1``, random erasing 0.25) and the CutMix one (RandomResizedCrop-224, flip,
  ColorJitter 0.4, PCA lighting 0.1) through :class:`common.loader.FileLoader` (batch 64,
  persistent workers, per-sample seeding) with 0, 1 and 2 workers.
* Clock: CPU time of this process plus its worker processes (read from /proc), which the
  machine's load barely changes; interleaved rounds (every variant once per round, in a new seeded
  order), ratio per round, median over rounds. Wall-clock images/s are recorded too; on a shared
  machine they follow its load.
* Feeding a GPU: NVIDIA's published ResNet-50 v1.5 training throughput on one A100 80GB with
  mixed precision, 2470 images/s (NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/
  resnet50v1.5/README.md, "Training performance: NVIDIA DGX A100 (8x A100 80GB)", 1 GPU,
  pytorch-21.03 container). Workers needed = 2470 / (images per CPU-second of the worker process
  in the 1-worker pass: a worker's rate on a core of its own).
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

A100_RN50_IMAGES_PER_S = 2470.0
A100_SOURCE = ("NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "
               "Training performance: NVIDIA DGX A100 (8x A100 80GB), 1 GPU, mixed precision")
PIPELINES = {
    "deit": {"input_size": 224, "interpolation": "bicubic", "auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25},
    "cutmix": {"input_size": 224, "color_jitter": [0.4, 0.4, 0.4], "lighting": 0.1},
}
COLUMNS = ["pipeline", "workers", "rounds", "images", "images_per_cpu_s", "decode_images_per_cpu_s",
           "ratio_to_decode", "ratio_q25", "ratio_q75", "worker_images_per_cpu_s", "main_cpu_share",
           "images_per_s", "decode_images_per_s", "ratio_wall", "per_worker_images_per_s", "workers_for_a100_rn50"]


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` from /proc (Linux); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _worker_cpu(file_loader) -> float:
    it = getattr(file_loader.loader, "_iterator", None)  # persistent workers keep their iterator
    return sum(_proc_cpu(w.pid) for w in getattr(it, "_workers", []) or [])


def make_jpegs(root: Path, n: int, classes: int = 10, size=(500, 375)) -> Path:
    """``root/imagenet/{train,val}/cNN/*.JPEG``: ``n`` deterministic synthetic photos-like JPEGs."""
    import numpy as np
    from PIL import Image

    for i in range(n):
        rng = np.random.default_rng(i)
        low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize(size, Image.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        d = root / "imagenet" / ("train" if i >= classes else "val") / f"c{i % classes:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.JPEG", quality=90)
    # the val split needs every class: one image each (i < classes), plus a train copy of the layout
    return root


def _decode_all(paths) -> int:
    from PIL import Image

    for p in paths:
        with Image.open(p) as im:
            im.convert("RGB")
    return len(paths)


def run(out: Path, quick: bool = False, images: int | None = None, per_pass: int | None = None,
        rounds: int | None = None, workers=(0, 1, 2), seed: int = 0) -> list[dict]:
    import torch

    from common.data import prepare_splits
    from common.loader import FileLoader
    from common.transforms import build_transform

    images = images or (80 if quick else 2000)
    per_pass = per_pass or (32 if quick else 256)
    rounds = rounds or (2 if quick else 3)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        root = make_jpegs(Path(tmp), images)
        gen_s = time.perf_counter() - t0
        splits = prepare_splits({"name": "imagenet", "root": str(root)})
        sub = splits.train.subset(list(range(min(per_pass, len(splits.train)))))
        paths = [sub.source / n for n in sub.names]
        loaders = {}
        for name, spec in PIPELINES.items():
            tf = build_transform(spec, 224, splits.mean, splits.std, train=True)
            for w in workers:
                loaders[(name, w)] = FileLoader(sub, 64, tf, shuffle=True, seed=seed, train=True, workers=w,
                                                persistent_workers=True, prefetch_factor=2)
        epoch = {k: 0 for k in loaders}

        def one_pass(key):
            n = 0
            for b in loaders[key].epoch(epoch[key]):
                n += b.x.shape[0]
            epoch[key] += 1
            return n

        def cpu(key):  # this process + its loader's workers
            return time.process_time() + (0.0 if key == "decode" else _worker_cpu(loaders[key]))

        for key in loaders:  # start the workers, warm the page cache (untimed)
            one_pass(key)
        _decode_all(paths)
        rates: dict = {k: [] for k in loaders}
        rates["decode"] = []
        cpu_rates: dict = {k: [] for k in rates}  # images per CPU-second, this process + workers
        worker_rates: dict = {k: [] for k in rates}  # images per CPU-second of the workers alone
        main_share: dict = {k: [] for k in rates}
        order = list(rates)
        rng = random.Random(seed)
        for _ in range(rounds):
            rng.shuffle(order)
            for key in order:
                s, c, m = time.perf_counter(), cpu(key), time.process_time()
                n = _decode_all(paths) if key == "decode" else one_pass(key)
                used = max(1e-9, cpu(key) - c)
                rates[key].append(n / (time.perf_counter() - s))
                cpu_rates[key].append(n / used)
                main = time.process_time() - m
                main_share[key].append(main / used)
                if used - main > 1e-3:
                    worker_rates[key].append(n / (used - main))
        for ld in loaders.values():
            del ld.loader  # stops the persistent workers
    rows = []
    med = statistics.median
    for (name, w) in loaders:
        ratios = [a / b for a, b in zip(cpu_rates[(name, w)], cpu_rates["decode"])]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        wall = [a / b for a, b in zip(rates[(name, w)], rates["decode"])]
        rows.append({"pipeline": name, "workers": w, "rounds": rounds, "images": per_pass,
                     "images_per_cpu_s": med(cpu_rates[(name, w)]), "decode_images_per_cpu_s": med(cpu_rates["decode"]),
                     "ratio_to_decode": med(ratios), "ratio_q25": q[0], "ratio_q75": q[2],
                     "worker_images_per_cpu_s": med(worker_rates[(name, w)]) if worker_rates[(name, w)] else None,
                     "main_cpu_share": med(main_share[(name, w)]),
                     "images_per_s": med(rates[(name, w)]), "decode_images_per_s": med(rates["decode"]),
                     "ratio_wall": med(wall)})
    for name in PIPELINES:
        # one worker's rate on a core of its own: images per CPU-second of the worker process in the
        # 1-worker pass (CPU time, which the machine's load barely changes); else the 0-worker pass
        one = next((r for r in rows if r["pipeline"] == name and r["workers"] == 1), None)
        zero = next((r for r in rows if r["pipeline"] == name and r["workers"] == 0), None)
        per_worker = (one or {}).get("worker_images_per_cpu_s") or (zero or {}).get("images_per_cpu_s")
        for r in rows:
            if r["pipeline"] == name:
                r["per_worker_images_per_s"] = per_worker
                r["workers_for_a100_rn50"] = math.ceil(A100_RN50_IMAGES_PER_S / per_worker) if per_worker else None
    meta = {"images_generated": images, "generate_s": round(gen_s, 1), "runtime_s": round(time.perf_counter() - t0, 1),
            "load_avg": round(os.getloadavg()[0], 2), "cores": os.cpu_count(), "quick": quick,
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    write(rows, meta, Path(out))
    return rows


def write(rows: list[dict], meta: dict, out: Path) -> None:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=COLUMNS)
    head = (f"# python -m benchmarks.loader_bench{' --quick' if meta['quick'] else ''}; {meta['date_utc']} UTC; "
            f"{meta['cores']} cores, load average {meta['load_avg']}; {meta['images_generated']} synthetic 500x375 "
            f"JPEGs; wall clock, median over rounds; runtime {meta['runtime_s']} s\n")
    (out / "loader.csv").write_text(head + df.to_csv(index=False, float_format="%.4g"))
    (out / "loader_README_section.md").write_text(markdown(df, meta))


def markdown(df, meta: dict) -> str:
    lines = [
        f"File-based ImageNet train path (`common.loader.FileLoader`, batch 64, per-sample seeded timm transforms) "
        f"on {meta['images_generated']} synthetic 500x375 JPEGs, {meta['cores']} cores (load average "
        f"{meta['load_avg']}, a shared machine), {meta['date_utc']} UTC. Ratio = images per CPU-second of the "
        f"pipeline (this process + its worker processes) / images per CPU-second of decoding alone "
        f"(`PIL.Image.open(...).convert('RGB')` in one process), per round, median [inter-quartile range] over "
        f"{int(df['rounds'].iloc[0])} interleaved rounds; wall-clock images/s (which follow the machine's load) "
        f"are in the CSV. "
        f"Rerun: `python -m benchmarks.loader_bench --out results/bench` "
        f"([`results/bench/loader.csv`](results/bench/loader.csv)).",
        "",
        "| pipeline | workers | images per CPU-s | decode alone per CPU-s | ratio to decode | main-process share of CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for _, r in df.iterrows():
        lines.append(f"| {r['pipeline']} | {r['workers']} | {r['images_per_cpu_s']:.0f} | "
                     f"{r['decode_images_per_cpu_s']:.0f} | {r['ratio_to_decode']:.2f}x [{r['ratio_q25']:.2f}, "
                     f"{r['ratio_q75']:.2f}] | {100 * r['main_cpu_share']:.0f}% |")
    lines.append("")
    for name in PIPELINES:
        r = df[df["pipeline"] == name].iloc[0]
        if r["per_worker_images_per_s"] and math.isfinite(r["per_worker_images_per_s"]):
            lines.append(f"* **{name}**: one worker process turns out {r['per_worker_images_per_s']:.0f} images per "
                         f"CPU-second, so feeding one A100 training ResNet-50 at {A100_RN50_IMAGES_PER_S:.0f} "
                         f"images/s needs about **{int(r['workers_for_a100_rn50'])} workers**, each on a core of its own.")
    lines.append(f"* Assumed GPU rate: {A100_RN50_IMAGES_PER_S:.0f} images/s = {A100_SOURCE}. Workers needed = that "
                 f"rate / one worker's images per CPU-second (CPU time, not wall time: wall-clock rates on this "
                 f"shared 2-core machine follow its load, and the 1- and 2-worker passes share the cores with the "
                 f"main process and everyone else).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--quick", action="store_true", help="smoke test: 80 images, 32 per pass, 2 rounds")
    ap.add_argument("--images", type=int, default=None, help="JPEGs to generate (default 2000)")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args(argv)
    rows = run(Path(args.out), args.quick, args.images, rounds=args.rounds)
    for r in rows:
        print(f"{r['pipeline']:7s} workers={r['workers']} {r['images_per_cpu_s']:7.1f} img/CPU-s  "
              f"x{r['ratio_to_decode']:.2f} of decode  -> {r['workers_for_a100_rn50']} workers for A100 RN50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
