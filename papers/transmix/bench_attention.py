"""Cost of the class-token attention hook per training step (hooked vs plain step time).

    python -m papers.transmix.bench_attention [--steps 30] [--threads 1] [--deit]

For each model, one training step = forward + backward + AdamW step on a fixed batch. Three
variants are timed in interleaved rounds (so load changes on a shared machine hit all alike):

* ``plain``   — the unmodified model, fused attention on, no hook;
* ``hooked``  — the same step with :class:`common.attention.ClassTokenAttention` armed (the
  class row of the last block is recomputed from the ``qkv`` output; what TransMix/MixPro pay);
* ``unfused`` — option B for reference: fused attention switched off in the last block and the
  full probability matrix read at ``attn_drop`` (what a "return the attention" patch costs).

Prints the median step time of each and the ratios to ``plain``, plus the hook's own work timed
in isolation (``hook_only_ms``: recomputing the class row from a captured ``qkv`` output) as a
share of the plain step — the number that stays meaningful when the machine is loaded and the
step-time ratio is within noise.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from common.attention import ClassTokenAttention
from common.models import build_model


def _step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def bench(spec: dict, input_shape: tuple, batch: int, steps: int, rounds: int = 5, num_classes: int = 10) -> dict:
    torch.manual_seed(0)
    model = build_model(spec, num_classes, input_shape)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, *input_shape)
    y = torch.randint(0, num_classes, (batch,))
    ext = ClassTokenAttention(model)
    attn = model.blocks[-1].attn
    grabbed = {}

    def run(kind):
        t0 = time.perf_counter()
        for _ in range(steps):
            if kind == "plain":
                _step(model, opt, x, y)
            elif kind == "hooked":
                with ext.capture():
                    _step(model, opt, x, y)
                ext.take()
            else:
                attn.fused_attn = False
                h = attn.attn_drop.register_forward_pre_hook(lambda m, a: grabbed.__setitem__("p", a[0].detach()))
                _step(model, opt, x, y)
                h.remove()
                attn.fused_attn = True
                grabbed["p"][:, :, 0, 1:].mean(1)
        return (time.perf_counter() - t0) / steps

    for k in ("plain", "hooked", "unfused"):  # warm-up
        run(k)
    times = {k: [] for k in ("plain", "hooked", "unfused")}
    kinds = list(times)
    for r in range(rounds):  # rotate the order so no variant always runs first
        for k in kinds[r % 3:] + kinds[: r % 3]:
            times[k].append(run(k))
    med = {k: statistics.median(v) for k, v in times.items()}
    # the hook's own work, timed in isolation on the captured qkv output (robust to machine load)
    qkv_out = {}
    h = attn.qkv.register_forward_hook(lambda m, i, o: qkv_out.__setitem__("o", o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    ext._armed = True
    t0 = time.perf_counter()
    for _ in range(steps * 10):
        ext._on_qkv(attn.qkv, None, qkv_out["o"])
        ext.take()
    ext._armed = False
    hook_ms = 1000 * (time.perf_counter() - t0) / (steps * 10)
    return {"model": spec, "input": list(input_shape), "batch": batch, "steps_per_round": steps, "rounds": rounds,
            "threads": torch.get_num_threads(),
            "ms_per_step": {k: round(1000 * v, 2) for k, v in med.items()},
            "hook_only_ms": round(hook_ms, 3),
            "hook_share_of_plain_step": round(hook_ms / (1000 * med["plain"]), 5),
            "ratio_hooked": round(med["hooked"] / med["plain"], 4),
            "ratio_unfused": round(med["unfused"] / med["plain"], 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deit", action="store_true", help="also DeiT-T at 224 (batch 8)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = [bench({"name": "vit", "patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3, "mlp_ratio": 2.0,
                  "drop_path_rate": 0.1}, (3, 32, 32), 64, a.steps, a.rounds)]
    if a.deit:
        out.append(bench({"name": "timm:deit_tiny_patch16_224", "drop_path_rate": 0.1}, (3, 224, 224), 8,
                         max(1, a.steps // 4), a.rounds, num_classes=1000))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
