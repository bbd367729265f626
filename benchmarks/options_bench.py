"""Section 5: CPU options on the ResNet training step (erm, resnet20 w16, SGD-nesterov).

Each trial is timed interleaved against the default (fp32, contiguous NCHW, deterministic
algorithms on as in the trainer, the benchmark's thread count, batch 128):

* ``channels_last`` — model and batch in NHWC (``train.channels_last`` in run configs);
* ``bf16 autocast`` — ``torch.autocast('cpu', dtype=torch.bfloat16)`` around forward + loss;
* ``deterministic off`` — ``torch.use_deterministic_algorithms(False)`` (the trainer turns it on);
* ``threads 2 vs 1`` — ``torch.set_num_threads``; wall clock (CPU time would count spinning);
* ``batch 64 / 256`` — time per image against batch 128;
* ``torch.compile`` — in a subprocess with a fresh inductor cache and a time limit
  (``python -m benchmarks.options_bench --compile-trial``): compile time, then compiled vs eager
  steps interleaved in that process.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from . import harness as H
from .timing import interleave, make_row, ratio_summary, skipped_row

SECTION = "cpu_options"


class _Step:
    def __init__(self, bs: int, channels_last=False, bf16=False, seed=0):
        self.model = H.build(H.CNN, 10, H.IMAGE_SHAPE, seed)
        data = H.random_images(bs, seed)
        self.x, self.y = H.image_batch(data, bs).x, data.y[:bs].clone()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.opt = H.optimizer(self.model, H.SGD)
        self.bf16 = bf16
        self.fwd = self.model

    def __call__(self):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            loss = F.cross_entropy(self.fwd(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        float(loss.detach())


def run(quick: bool, threads: int, compile_timeout: float = 300.0) -> list[dict]:
    bs = 16 if quick else 128
    rounds = 1 if quick else 5
    rows = []
    note = f"erm step, resnet20 w16, batch {bs}, SGD-nesterov"
    base = _Step(bs)
    det = torch.are_deterministic_algorithms_enabled()

    def det_off():
        torch.use_deterministic_algorithms(False)

    def det_on():
        torch.use_deterministic_algorithms(det, warn_only=True)

    fns = {"default": base, "channels_last": _Step(bs, channels_last=True), "bf16 autocast": _Step(bs, bf16=True),
           "deterministic off": _Step(bs)}
    before = {k: det_on for k in fns}
    before["deterministic off"] = det_off
    t = interleave(fns, rounds, 1, warmup=1, before=before)
    det_on()
    for name in ("channels_last", "bf16 autocast", "deterministic off"):
        rows.append(make_row(SECTION, "option_trial", "resnet20", name, "default", ratio_summary(t, name, "default"),
                             images=bs, note=note))

    # threads: wall clock
    other = 2 if threads == 1 else 1
    if quick:  # oversubscribed threads can take seconds per step on a loaded machine
        rows.append(skipped_row(SECTION, "option_trial", "resnet20", f"threads {other}", f"threads {threads}",
                                "skipped", "not tried in --quick mode"))
    else:
        rows += _threads_trial(32, 3, threads, other)

    # batch size: per-image time
    sizes = (8, 16, 32) if quick else (64, 128, 256)
    ref = sizes[1]
    steps = {f"batch {b}": _Step(b) for b in sizes}
    tb = interleave(steps, rounds, 1, warmup=1)
    for d in (tb.cpu, tb.wall):
        for b in sizes:
            d[f"batch {b}"] = [x / b for x in d[f"batch {b}"]]
    for b in sizes:
        if b != ref:
            rows.append(make_row(SECTION, "option_trial", "resnet20", f"batch {b}", f"batch {ref}",
                                 ratio_summary(tb, f"batch {b}", f"batch {ref}"), unit="image", images=1,
                                 note="erm step time per image, resnet20 w16"))

    # torch.compile in a subprocess
    if quick:
        rows.append(skipped_row(SECTION, "option_trial", "resnet20", "torch.compile", "default", "skipped",
                                "not tried in --quick mode (compilation takes minutes on this machine)"))
    else:
        rows.append(_compile_trial(threads, compile_timeout, bs))
    return rows


def _threads_trial(bs: int, rounds: int, threads: int, other: int, budget_s: float = 40.0) -> list[dict]:
    """Wall time per step at ``other`` vs ``threads`` intra-op threads, alternating; stops early once
    ``budget_s`` is spent (oversubscribed OpenMP threads can take many seconds per step when the
    machine is loaded)."""
    from .timing import Timings

    a, b = f"threads {other}", f"threads {threads}"
    steps = {a: _Step(bs), b: _Step(bs)}
    n = {a: other, b: threads}
    t = Timings({a: [], b: []}, {a: [], b: []})
    w_start = time.perf_counter()
    try:
        for name in (b, a):  # warm-up
            torch.set_num_threads(n[name])
            steps[name]()
        for r in range(rounds):
            for name in ((a, b) if r % 2 else (b, a)):
                torch.set_num_threads(n[name])
                c0, w0 = time.process_time(), time.perf_counter()
                steps[name]()
                t.cpu[name].append(time.process_time() - c0)
                t.wall[name].append(time.perf_counter() - w0)
            if time.perf_counter() - w_start > budget_s:
                break
    finally:
        torch.set_num_threads(threads)
    return [make_row(SECTION, "option_trial", "resnet20", a, b, ratio_summary(t, a, b, clock="wall"), images=bs,
                     note=f"erm step, resnet20 w16, batch {bs}; wall clock with the machine's other load, as a "
                          f"real run sees it ({len(t.wall[a])} alternating rounds within a {budget_s:.0f} s budget); "
                          f"measured at load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")]


def _compile_trial(threads: int, timeout: float, bs: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.options_bench", "--compile-trial", "--threads", str(threads),
           "--batch", str(bs)]
    env = dict(os.environ)
    w0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mixrepro-inductor-") as cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold cache: the compile time a fresh run pays
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        except subprocess.TimeoutExpired:
            return skipped_row(SECTION, "option_trial", "resnet20", "torch.compile", "default", "too_slow",
                               f"compilation + timing did not finish within {timeout:.0f} s (killed)")
    wall = time.perf_counter() - w0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return skipped_row(SECTION, "option_trial", "resnet20", "torch.compile", "default", "failed",
                           f"exit {p.returncode}: {err}")
    res = json.loads(lines[-1])
    s = res["summary"]
    steps_to_amortise = res["compile_s"] / max(1e-9, s["baseline_s"] - s["variant_s"]) \
        if s["variant_s"] < s["baseline_s"] else float("inf")
    return make_row(SECTION, "option_trial", "resnet20", "torch.compile", "default", s, images=bs,
                    note=f"first compiled step (compilation) took {res['compile_s']:.0f} s wall, cold inductor cache; "
                         f"pays off after ~{steps_to_amortise:.0f} steps; trial {wall:.0f} s in total")


def compile_trial_main(threads: int, bs: int, rounds: int = 5) -> None:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    eager, comp = _Step(bs), _Step(bs)
    comp.fwd = torch.compile(comp.model)
    w0 = time.perf_counter()
    comp()  # compilation happens here
    compile_s = time.perf_counter() - w0
    t = interleave({"torch.compile": comp, "default": eager}, rounds, 1, warmup=1)
    print(json.dumps({"compile_s": compile_s, "summary": ratio_summary(t, "torch.compile", "default")}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--compile-trial", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    if a.compile_trial:
        compile_trial_main(a.threads, a.batch)
