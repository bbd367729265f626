"""Does the portable mode (:mod:`common.verify.portable`) make runs independent of the CPU's instruction set?

Each instruction set this CPU offers is *emulated* by capping every library that picks its kernels by
CPU feature at that set: ATen (``ATEN_CPU_CAPABILITY``), oneDNN (``DNNL_MAX_CPU_ISA``), MKL
(``MKL_ENABLE_INSTRUCTIONS``), numpy (``NPY_DISABLE_CPU_FEATURES``), glibc's libm
(``GLIBC_TUNABLES=glibc.cpu.hwcaps``) and libjpeg-turbo (``JSIMD_FORCESSE2``). A short run of a CIFAR
ResNet-20 and of a ViT config of the cpu grids (:data:`SHORT`: 1 epoch, 500 training images, 1000 test
images, no occlusion evaluation) is trained under each emulated set, without and with the portable mode (``MIXREPRO_PORTABLE=1``
read by ``common.train``), one thread, and the outputs are compared bit for bit
(:func:`common.verify.compare.comparable`). Then the mode's cost: the real cpu configs for one epoch,
normal and portable alternating in one invocation, as the ratio of the epoch loop's CPU time.

    python -m benchmarks.portable --data-root ../shared/data --out results/bench
    python -m benchmarks.portable --data-root ../shared/data --out /tmp/p --skip-timing --scratch /tmp/p/runs

Writes ``portable.csv`` (one row per short run), ``portable_timing.csv`` and ``portable.md`` (the
finding, with a header: machine, load, what was run) into ``--out``. Every emulation decodes the data
again into its own cache. ``--scratch`` keeps the runs, and a later invocation reuses finished ones.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from common.config import plan
from common.fileio import atomic_write_text, cpu_info, hardware, package_versions
from common.verify import portable
from common.verify.compare import comparable, first_difference
from common.verify.costs import with_values

ROOT = Path(__file__).resolve().parent.parent
#: the cpu-grid runs the short configs start from (method-dataset-model-seed prefix of a run id)
BASES = {"resnet20": "mixup-cifar10-resnet20-s0", "vit": "transmix-cifar10-vit-s0"}
SHORT = {"train.epochs": 1, "train.warmup_epochs": 0, "dataset.train_size": 500, "dataset.val_size": 200,
         "dataset.test_size": 1000, "eval.occlusion": None}
#: the timing runs: the real config's training set, one epoch, no occlusion evaluation
ONE_EPOCH = {"train.epochs": 1, "train.warmup_epochs": 0, "dataset.test_size": 1000, "eval.occlusion": None}
#: numpy's dispatch targets above its x86-64-v2 baseline (numpy >= 2.4 names)
NPY_ABOVE_V2 = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
#: what an SSE4-only or AVX-only CPU (no FMA, no AVX2) runs: ATen's baseline kernels, libm's non-FMA code
BELOW_AVX2 = {"ATEN_CPU_CAPABILITY": "default", "NPY_DISABLE_CPU_FEATURES": NPY_ABOVE_V2,
              "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-FMA4"}


def emulations(flags: set[str]) -> dict[str, dict[str, str]]:
    """``{name: environment}``: the instruction sets a CPU with ``flags`` (``/proc/cpuinfo``) can run,
    each as a cap on every library. ``native`` (twice: the run-to-run control) sets nothing."""
    out = {"native": {}, "native again": {}}
    if "avx512f" in flags:
        out["avx512"] = {"ATEN_CPU_CAPABILITY": "avx512", "DNNL_MAX_CPU_ISA": "AVX512_CORE",
                         "MKL_ENABLE_INSTRUCTIONS": "AVX512"}
    if "avx2" in flags:
        out["avx2"] = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                       "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
    if "avx" in flags:
        out["avx"] = {**BELOW_AVX2, "DNNL_MAX_CPU_ISA": "AVX", "MKL_ENABLE_INSTRUCTIONS": "AVX"}
    out["sse4"] = {**BELOW_AVX2, "DNNL_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                   "JSIMD_FORCESSE2": "1",
                   "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-FMA4,-AVX"}
    return out


def base_config(model: str) -> tuple[str, dict]:
    """``(run id, config)`` of the first cpu-grid run whose id starts with ``BASES[model]``."""
    runs, _ = plan("cpu", ROOT)
    rid = min(r for r in runs if r.startswith(BASES[model]))
    return rid, runs[rid]


def train(cfg: dict, out: Path, env: dict, portable_mode: bool, cache: Path) -> dict:
    """Train ``cfg`` into ``out`` in a fresh ``python -m common.train`` under ``env`` (+ the portable
    mode), one thread; return its provenance. A failed run stops the benchmark with its log; a finished
    one in ``out`` (an earlier invocation with the same ``--scratch``) is kept."""
    if not (out / "metrics.json").is_file():
        full = {**os.environ, "OMP_NUM_THREADS": "1", "MIXREPRO_CACHE": str(cache), **env}
        full.pop(portable.FLAG, None)
        if portable_mode:
            full[portable.FLAG] = "1"
        p = subprocess.run([sys.executable, "-m", "common.train", "--config-json", json.dumps(cfg), "--out", str(out),
                            "--ckpt-dir", str(out.parent / (out.name + ".ckpt"))],
                           env=full, capture_output=True, text=True, cwd=ROOT, check=False)
        if p.returncode:
            raise SystemExit(f"error: training {out.name} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())["provenance"]


def digest(result: dict) -> str:
    """Short hash of a run's :func:`comparable` output: equal digests, bit-identical results."""
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()[:12]


def identity_runs(scratch: Path, emus: dict, log) -> pd.DataFrame:
    """Every (model, emulation, mode) short run: output digest, epoch-1 loss, final top-1, the kernels
    its provenance says it ran."""
    rows = []
    for model in BASES:
        base_id, cfg = base_config(model)
        short = with_values(cfg, SHORT)
        for emu, env in emus.items():
            for mode in ("off", "portable"):
                out = scratch / f"{model}-{emu.replace(' ', '-')}-{mode}"
                prov = train(short, out, env, mode == "portable", scratch / f"cache-{emu.split()[0]}")
                c = comparable(out)
                rows.append({"model": model, "base_run": base_id, "emulation": emu, "mode": mode, "digest": digest(c),
                             "epoch1_train_loss": c["epochs"][0]["train_loss"], "top1": c["metrics"]["test"]["top1"],
                             "torch_cpu_capability": prov["hardware"]["torch_cpu_capability"],
                             "portable_recorded": prov["portable"]["portable"],
                             "mkldnn_enabled": prov["portable"]["mkldnn_enabled"],
                             "train_cpu_s": prov["train_cpu_sec"], "dir": str(out)})
                r = rows[-1]
                log(f"{model:8s} {emu:12s} {mode:8s} {r['digest']} {r['torch_cpu_capability']:7s} "
                    f"loss {r['epoch1_train_loss']!r} top1 {r['top1']!r}")
    return pd.DataFrame(rows)


def timing_runs(scratch: Path, rounds: int, log) -> pd.DataFrame:
    """The mode's cost on the real cpu configs (:data:`ONE_EPOCH`): normal and portable alternate, the
    order flipping each round; CPU and wall time of the epoch loop."""
    rows = []
    for model in BASES:
        base_id, cfg = base_config(model)
        one = with_values(cfg, ONE_EPOCH)
        for r in range(rounds):
            modes = ("off", "portable") if r % 2 == 0 else ("portable", "off")
            prov = {m: train(one, scratch / f"time-{model}-{r}-{m}", {}, m == "portable", scratch / "cache-native")
                    for m in modes}
            cpu = {m: p["train_cpu_sec"] for m, p in prov.items()}
            rows.append({"model": model, "base_run": base_id, "round": r, "first": modes[0],
                         "off_cpu_s": cpu["off"], "portable_cpu_s": cpu["portable"],
                         "off_wall_s": prov["off"]["train_time_sec"], "portable_wall_s": prov["portable"]["train_time_sec"],
                         "ratio": cpu["portable"] / cpu["off"]})
            log(f"timing {model} round {r}: {cpu['off']:.1f} s -> {cpu['portable']:.1f} s CPU")
    return pd.DataFrame(rows)


def agreement(results: list[tuple[str, dict]]) -> tuple[bool, str]:
    """Whether every ``(label, comparable output)`` equals the first, bit for bit; if not, the first run
    that differs and the first place where it does (:func:`first_difference`)."""
    ref_label, ref = results[0]
    for label, other in results[1:]:
        diff = first_difference(ref, other)
        if diff:
            return False, f"{ref_label} vs {label}: {diff}"
    return True, ""


def group_agreement(df: pd.DataFrame, mode: str, model: str) -> tuple[bool, str]:
    """:func:`agreement` of the short runs of (``mode``, ``model``) over the emulations, read from their dirs."""
    g = df[(df["mode"] == mode) & (df["model"] == model)]
    return agreement([(row.emulation, comparable(Path(row.dir))) for row in g.itertuples()])


def runs_wall_minutes(scratch: Path) -> float:
    """The summed wall time of the training processes whose outputs are in ``scratch``, in minutes."""
    return sum(json.loads(m.read_text())["provenance"]["wall_time_sec"] for m in scratch.glob("*/metrics.json")) / 60


def header(hw: dict, versions: dict, load: tuple, argv: list[str], runs: tuple[int, int], minutes: tuple[float, float],
           note: str) -> list[str]:
    """Where and how the study ran: machine, libraries, load, command, ``(runs, of which reused)``,
    ``(this invocation's, the runs' summed)`` minutes, and ``note``."""
    shown = ["NOTE" if i and argv[i - 1] == "--note" else x for i, x in enumerate(argv)]  # the note is printed already
    return [(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on **{hw['cpu_model']}** "
             f"({os.cpu_count()} cores; ISA flags {', '.join(hw['cpu_flags']) or 'none'}; torch capability "
             f"{hw['torch_cpu_capability']}), torch {versions.get('torch')}, numpy {versions.get('numpy')}, "
             f"Python {versions.get('python')}. Every run one thread (`OMP_NUM_THREADS=1`), in its own process. "
             f"Load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end: the machine was shared "
             f"with other jobs, which CPU-time ratios largely ignore. {runs[0]} training runs ({runs[1]} of them "
             f"finished by an earlier invocation with the same `--scratch` and reused); this invocation {minutes[0]:.0f} min, "
             f"the training processes' wall times summed {minutes[1]:.0f} min. {note + ' ' if note else ''}"
             f"Command: `python -m benchmarks.portable {shlex.join(shown)}`.\n")]


def identity_table(df: pd.DataFrame) -> list[str]:
    sizes = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in SHORT.items())
    lines = [(f"**Bit identity.** Short runs ({sizes}) of the cpu-grid configs, each instruction set this CPU "
              "offers emulated by capping every kernel library at it (`portable.csv` lists each run's output "
              "digest, epoch-1 loss, top-1 and the torch capability its provenance records):\n"),
             "| model (cpu run) | emulated instruction sets | normal mode | portable mode |", "|---|---|---|---|"]
    for model, g in df.groupby("model", sort=False):
        cells = []
        for mode in ("off", "portable"):
            same, diff = group_agreement(df, mode, model)
            n = g[g["mode"] == mode]["digest"].nunique()
            cells.append("bit-identical" if same else f"{n} different results; first: {diff}")
        lines.append(f"| {model} (`{g['base_run'].iloc[0]}`) | {', '.join(g['emulation'].unique())} | "
                     f"{cells[0]} | {cells[1]} |")
    return lines


def timing_table(timing: pd.DataFrame) -> list[str]:
    lines = ["", (f"**Cost.** The real cpu configs ({', '.join(f'{k} {v}' for k, v in ONE_EPOCH.items())}), "
                  "normal and portable alternating in one invocation; CPU time of the epoch loop, median over "
                  "rounds (`portable_timing.csv`):"), "",
             "| model | rounds | normal (s) | portable (s) | slowdown (median ratio) | range |", "|---|---|---|---|---|---|"]
    for model, g in timing.groupby("model", sort=False):
        lines.append(f"| {model} | {len(g)} | {g['off_cpu_s'].median():.1f} | {g['portable_cpu_s'].median():.1f} | "
                     f"{g['ratio'].median():.2f}x | {g['ratio'].min():.2f}-{g['ratio'].max():.2f}x |")
    return lines


def finding_markdown(df: pd.DataFrame, timing: pd.DataFrame | None, head: list[str]) -> str:
    lines = ["# Portable mode: bit identity across instruction sets, measured\n", *head, *identity_table(df)]
    if timing is not None and not timing.empty:
        lines += timing_table(timing)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds per model")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--scratch", type=Path, help="keep the runs here (default: a temporary directory)")
    ap.add_argument("--note", default="", help="a sentence for the header of portable.md (e.g. why sizes were cut)")
    a = ap.parse_args(argv)
    os.environ["MIXREPRO_DATA"] = str(Path(a.data_root).resolve())

    def log(msg):
        print(f"[portable {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    hw, versions, t0, load0 = hardware(), package_versions(), time.time(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="portable-") as tmp:
        scratch = a.scratch or Path(tmp)
        reused = len(list(scratch.glob("*/metrics.json")))
        df = identity_runs(scratch, emulations(cpu_info()[1]), log)
        timing = None if a.skip_timing else timing_runs(scratch, a.rounds, log)
        n_runs = len(df) + 2 * (0 if timing is None else len(timing))
        head = header(hw, versions, (load0, os.getloadavg()[0]), argv, (n_runs, reused),
                      ((time.time() - t0) / 60, runs_wall_minutes(scratch)), a.note)
        text = finding_markdown(df, timing, head)
    a.out.mkdir(parents=True, exist_ok=True)
    df.drop(columns="dir").to_csv(a.out / "portable.csv", index=False)
    if timing is not None:
        timing.to_csv(a.out / "portable_timing.csv", index=False)
    atomic_write_text(a.out / "portable.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
