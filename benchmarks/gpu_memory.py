"""Expected peak memory per GPU of the ``paper``-scale runs, estimated on the CPU.

    python -m benchmarks.gpu_memory                    # every paper's GPU settings
    python -m benchmarks.gpu_memory --paper transmix   # one paper

For each distinct training setting of the ``paper`` grids that asks for GPUs (model, input size,
per-GPU batch, method, optimiser, EMA, AMP), the estimate in GB (2^30 bytes) is ``static + activations``:

* ``static``: the parameters' bytes x (1 weights + 1 gradients + the optimiser's state: 1 for SGD
  with momentum, 2 for Adam/AdamW + 1 when a model EMA is kept), fp32 as the trainer holds them;
  the gradients are counted in full, so this is an upper bound at the start of the backward pass;
* ``activations``: the bytes autograd keeps for the backward pass during one training step (the
  method's ``step``: its mixing, every forward pass and the loss), recorded with
  ``torch.autograd.graph.saved_tensors_hooks`` and counted once per storage (parameters excluded:
  they are in ``static``). The step runs at micro-batches of 2 and 4 samples (mixing pairs needs
  two) and is extrapolated linearly to the per-GPU batch b = ``train.batch_size`` / (``resources.gpus``
  x ``nodes``): ``saved(2) + (b - 2) x (saved(4) - saved(2)) / 2``. Runs with fp16 AMP are measured under CPU
  autocast to bfloat16 (2 bytes per value, as fp16).

``static + activations`` is what ``torch.cuda.max_memory_allocated`` counts, except the backward
pass's temporaries (the gradients of the activations being freed). Those are covered by a margin,
:data:`MARGIN`, measured once against a published figure: openmixup (Westlake-AI/openmixup at
37e1372, docs/en/mixup_benchmarks/Mixup_cifar.md L153-159) reports 8.1 GB for DeiT-S/16 at 224 px,
batch 100 on one GPU, AdamW, fp32, no mixing (8.2 GB with mixup or DeiT mixing), as mmcv logs it
(``torch.cuda.max_memory_allocated``, mmcv 1.7.2 mmcv/runner/hooks/logger/text.py L109-112); this
count gives 6.9 GB for that setting with its written-out attention (``--calibrate`` reruns it). The grids state
``MARGIN x (static + activations)`` rounded up to the next 0.5 GB in ``resources.gpu_mem_gb``;
``nvidia-smi`` shows about 0.5-1 GB more (CUDA context, cuDNN workspace, the allocator's cache).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import torch

from common.config import plan
from common.data import ArrayData, dataset_info
from common.methods import Batch, TrainState, build_method
from common.registry import load_plugins

from . import harness as H

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
MARGIN = 1.2  # 8.1 GB published / 6.9 GB counted for openmixup's DeiT-S CIFAR-100 setting (see --calibrate)
#: outputs and input shape of the paper-scale datasets trained on GPUs (the image side comes from
#: ``dataset.transform.input_size`` or the dataset's registered size)
DATASETS = {"cifar10": 10, "cifar100": 100, "tiny_imagenet": 200, "imagenet": 1000}
SERIES = {"electricity": (321, (168, 321))}  # LSTNet: 321 series, a 168-hour window (official config)


def shape_of(cfg: dict) -> tuple[int, tuple, str]:
    """(outputs, input shape, task) of a run config."""
    d = cfg["dataset"]
    if d["name"] in SERIES:
        n, shape = SERIES[d["name"]]
        return n, shape, "regression"
    side = (d.get("transform") or {}).get("input_size") or dataset_info(d["name"]).image_size
    return DATASETS[d["name"]], (3, side, side), "classification"


def saved_bytes(cfg: dict, model: torch.nn.Module, n: int) -> int:
    """Bytes of the non-parameter tensors one training step of ``cfg`` (on a copy of ``model``) saves for
    backward at batch ``n``."""
    outputs, shape, task = shape_of(cfg)
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, outputs, (n,), generator=g) if task == "classification" else torch.randn(n, outputs)
    ctx = H.make_context(task, ArrayData(x, y), model, outputs, shape)
    method = build_method(cfg["method"], ctx)
    method.setup(model)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):  # keep the storage alive (so no address is reused) without a cycle through t's grad_fn
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t.detach()

    amp = bool(cfg["train"]["amp"])
    state = TrainState(0, 0, 1, 1, torch.Generator().manual_seed(0), ctx)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = method.step(model, Batch(x, y, torch.arange(n)), state)
    del out
    return sum(seen.values())


def static_bytes(cfg: dict, model: torch.nn.Module) -> int:
    n_params = sum(p.numel() for p in model.parameters())
    t = cfg["train"]
    slots = 2 if t["optimizer"] in ("adam", "adamw") else int(t["optimizer"] == "sgd" and t["momentum"] > 0)
    return 4 * n_params * (2 + slots + int(t.get("ema") is not None))


def per_gpu_batch(cfg: dict) -> int:
    r = cfg["resources"]
    return max(1, cfg["train"]["batch_size"] // max(1, r["gpus"] * r["nodes"]))


def estimate(cfg: dict) -> dict:
    """The estimate of one run config: its parts in GB and ``gpu_mem_gb`` (rounded up to 0.5 GB)."""
    b = per_gpu_batch(cfg)
    outputs, shape, _ = shape_of(cfg)
    model = H.build(cfg["model"], outputs, shape)
    two, four = saved_bytes(cfg, model, 2), saved_bytes(cfg, model, 4)
    act = two + (b - 2) * (four - two) / 2
    static = static_bytes(cfg, model)
    total = (static + act) / GIB
    return {"per_gpu_batch": b, "static_gb": round(static / GIB, 3), "activations_gb": round(act / GIB, 3),
            "total_gb": round(total, 3), "gpu_mem_gb": math.ceil(MARGIN * total * 2) / 2}


def calibration() -> float:
    """The count for openmixup's DeiT-S CIFAR-100 benchmark (configs/classification/cifar100/mixups/vits/
    deit_s_mixups_sz224_bs100.py: DeiT-S/16, drop path 0.1, 224 px, batch 100, AdamW, fp32, no mixing;
    attention written out, as in its backbone) in GB; openmixup reports 8.1 GB for it."""
    import timm.layers

    from common.config import resolve

    cfg = resolve({"dataset": {"name": "cifar100", "transform": {"input_size": 224}},
                   "model": {"name": "timm:deit_small_patch16_224", "drop_path_rate": 0.1},
                   "train": {"batch_size": 100, "optimizer": "adamw"}, "resources": {"gpus": 1}})
    fused = timm.layers.use_fused_attn()
    timm.layers.set_fused_attn(False)
    try:
        return estimate(cfg)["total_gb"]
    finally:
        timm.layers.set_fused_attn(fused)


def setting_key(cfg: dict) -> str:
    """What the estimate depends on (runs that differ only by seed or method parameters share it)."""
    t = cfg["train"]
    parts = {"model": cfg["model"], "dataset": cfg["dataset"]["name"], "shape": shape_of(cfg)[1], "batch": per_gpu_batch(cfg),
             "method": cfg["method"]["name"], "optimizer": t["optimizer"], "momentum": t["momentum"],
             "ema": t.get("ema") is not None, "amp": t["amp"]}
    if "num_mixup" in cfg["method"]:
        parts["num_mixup"] = cfg["method"]["num_mixup"]
    return json.dumps(parts, sort_keys=True, default=str)


def paper_estimates(papers: list[str] | None = None):
    """One row per paper and distinct GPU setting (yielded as each is measured): the estimate and the
    values the grid states for its runs (``resources.gpu_mem_gb``)."""
    load_plugins()
    runs, by_paper = plan("paper", ROOT, only=papers)
    groups: dict[tuple, list[dict]] = {}
    for paper, ids in by_paper.items():
        for rid in ids:
            if runs[rid]["resources"]["gpus"]:
                groups.setdefault((paper, setting_key(runs[rid])), []).append(runs[rid])
    for (paper, _), cfgs in groups.items():
        cfg = cfgs[0]
        yield {"paper": paper, "model": cfg["model"]["name"], "dataset": cfg["dataset"]["name"],
               "method": cfg["method"]["name"], **estimate(cfg),
               "stated": {c["resources"].get("gpu_mem_gb") for c in cfgs}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--paper", action="append", help="paper folder name (repeatable; default: every paper)")
    ap.add_argument("--calibrate", action="store_true", help="print the count for the published reference setting")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.calibrate:
        load_plugins()
        got = calibration()
        print(f"openmixup DeiT-S CIFAR-100 (published 8.1 GB): counted {got:.2f} GB, ratio {8.1 / got:.3f}")
        return 0
    worst = {}
    for r in paper_estimates(a.paper):
        print(f"{r['paper']:16s} {r['dataset']:13s} {r['model']:30s} {r['method']:16s} batch/GPU {r['per_gpu_batch']:4d}: "
              f"static {r['static_gb']:6.2f} + activations {r['activations_gb']:6.2f} = {r['total_gb']:6.2f} GB "
              f"-> {r['gpu_mem_gb']} (grid: {', '.join(map(str, sorted(r['stated'], key=str)))})", flush=True)
        k = (r["paper"], r["dataset"], r["model"], r["per_gpu_batch"])
        worst[k] = max(worst.get(k, 0), r["gpu_mem_gb"])
    print("\nlargest per paper, dataset, model and batch/GPU:")
    for k, v in worst.items():
        print("  ", *k, v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
