"""Run the performance benchmarks and write ``bench.csv``, ``bench.png``/``.pdf`` and
``README_section.md`` into ``--out``.

    python -m benchmarks.run --out results/bench            # full run (about 10 minutes)
    python -m benchmarks.run --out /tmp/bench --quick       # smoke test (< 60 s), small batches

Sections (each a ratio of two variants timed in this one process, interleaved):

1. ``method_overhead`` — every registered method's training step vs the same ``erm`` step
   (resnet20 w16 and a small ViT on CIFAR-sized batches; an MLP for the regression methods);
   attention-label methods also vs the same ViT step with CutMix (:mod:`benchmarks.methods_bench`);
2. ``trainer`` — ``common.train.train`` images/s vs a bare PyTorch loop (:mod:`benchmarks.trainer_bench`);
3. ``data_path`` — ``Loader`` + ``BatchTransform`` vs the model step and vs per-sample torchvision;
4. ``mixing_ops`` — :mod:`common.mixing` vs timm ``Mixup`` and torchvision v2 ``MixUp``/``CutMix``;
5. ``cpu_options`` — channels_last, bf16 autocast, deterministic off, threads, batch size,
   ``torch.compile`` (:mod:`benchmarks.options_bench`);
6. ``loader`` — the file-based ImageNet train path per DataLoader worker count vs decoding alone
   (:mod:`benchmarks.loader_bench`; own files ``loader.csv``, ``loader_README_section.md``);

plus the workflow's wall time per paper from Snakemake's benchmark files when they exist
(:mod:`benchmarks.workflow_times`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

SECTIONS = ("methods", "trainer", "data", "ops", "options", "loader")


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def workflow_section(root: Path) -> dict:
    """``{scale: DataFrame}`` for scales with benchmark files, plus ``_targets`` rows."""
    import pandas as pd

    from .rebench import one_machine_factors
    from .workflow_times import format_seconds, summarize

    out: dict = {"_targets": []}
    budgets = {"quick": (15 * 60, "default `snakemake` (quick) <= 15 min"),
               "cpu": (4 * 3600, "whole cpu scale <= 4 h on 2 idle cores")}
    for scale in ("quick", "cpu"):
        try:
            one = one_machine_factors(scale, root) if scale == "cpu" else None
            df = summarize(scale, root, factors=one[0] if one else None)
        except Exception as e:  # noqa: BLE001 - a paper's grid may be mid-edit
            _log(f"workflow times for {scale}: {type(e).__name__}: {e}")
            continue
        if df.empty:
            continue
        out[scale] = df
        total = df[df["paper"] == "all papers"].iloc[0]
        budget, text = budgets[scale]
        # Runs are single-threaded and CPU-bound, so two at a time on 2 cores take about half their CPU
        # time. The wall-clock sum is not used: it grows with whatever else shared the cores.
        # Files written on different days/machines are first put in one machine's units when
        # benchmarks.rebench measured how each batch's machine compares (else the raw sum is used).
        one_machine = bool(pd.notna(total["cpu_one_machine_s"]))
        est = (total["cpu_one_machine_s"] if one_machine else total["cpu_s"]) / 2
        if total["complete"]:
            verdict = "met" if est <= budget else f"missed by {format_seconds(est - budget)}"
            shown = (f"~{format_seconds(est)} elapsed on 2 idle cores (CPU-time sum {format_seconds(total['cpu_s'])}"
                     f" / 2; wall-clock sum {format_seconds(total['wall_s'])})")
            if one_machine:
                info = one[1]
                when = info["meta"]
                today = (f"the rerun machine ({when['hardware']['cpu_model']}, {when['date'][:10]})" if when
                         else "today's machine")
                shown = (f"~{format_seconds(est)} elapsed on 2 idle cores on the machine of the {info['reference']} "
                         f"runs (CPU-time sum / 2, batches rescaled by `benchmarks.rebench`; the raw sum of files from "
                         f"several machines gives ~{format_seconds(total['cpu_s'] / 2)}, and {today} would take "
                         f"~{format_seconds(est * info['today_per_reference'])})")
        else:
            verdict = f"incomplete ({int(total['runs_measured'])}/{int(total['runs_planned'])} runs measured)"
            shown = f"sum so far {format_seconds(total['wall_s'])}"
        out["_targets"].append([f"workflow wall time, {scale} scale", text, shown, verdict])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    ap.add_argument("--quick", action="store_true", help="smoke test: small batches, few rounds (< 60 s)")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for every section but the thread trial (default 1: the workflow runs "
                         "one thread per job, and CPU-time ratios are cleanest single-threaded)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--compile-timeout", type=float, default=300.0, help="seconds allowed for the torch.compile trial")
    ap.add_argument("--root", default=".", help="repository root (for the workflow's benchmark files)")
    ap.add_argument("--render-only", action="store_true",
                    help="no measuring: redraw the figure and markdown from --out's bench.csv + bench_meta.json")
    args = ap.parse_args(argv)
    if args.render_only:
        return render(Path(args.out), Path(args.root))
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")

    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as common.train.train does
    warnings.filterwarnings("ignore", message=".*deterministic.*")

    from common.registry import load_plugins

    from . import report
    from .timing import machine_info, skipped_row

    meta = machine_info(args.threads)
    meta["quick"] = args.quick
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    try:
        load_plugins()
    except Exception as e:  # noqa: BLE001 - a broken paper package: record it, benchmark what registered
        rows.append(skipped_row("method_overhead", "import", "-", "papers", "-", "failed",
                                f"{type(e).__name__}: {e}"[:200]))

    def section(name, fn):
        if name not in sections:
            return
        _log(f"section {name} ...")
        s0 = time.perf_counter()
        try:
            new = fn(args.quick, args.threads)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
            traceback.print_exc()
            new = [skipped_row(name, "section", "-", name, "-", "failed", f"{type(e).__name__}: {e}"[:200])]
        finally:
            torch.set_num_threads(args.threads)
            torch.use_deterministic_algorithms(True, warn_only=True)
        rows.extend(new)
        _log(f"section {name}: {len(new)} rows in {time.perf_counter() - s0:.0f} s")

    from . import methods_bench, ops_bench, options_bench, trainer_bench

    section("methods", methods_bench.run)
    section("trainer", trainer_bench.run_trainer)
    section("data", trainer_bench.run_data_path)
    section("ops", ops_bench.run)
    section("options", lambda q, th: options_bench.run(q, th, args.compile_timeout))
    if "loader" in sections:  # its own table (per worker count), written to loader.csv
        from . import loader_bench

        _log("section loader ...")
        try:
            loader_bench.run(out, args.quick)
        except Exception:  # noqa: BLE001 - one broken section must not lose the others
            traceback.print_exc()

    workflow = workflow_section(Path(args.root))
    meta["load_avg_end"] = round(os.getloadavg()[0], 2)
    meta["runtime_s"] = time.perf_counter() - t0
    report.write_csv(rows, meta, out / "bench.csv")
    (out / "bench_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    # render from the CSV as written, so the markdown shows exactly the recorded (rounded) values
    _render(report.read_csv(out / "bench.csv"), meta, workflow, out)
    _log(f"wrote {out}/bench.csv, bench_meta.json, bench.png, bench.pdf, README_section.md in {meta['runtime_s']:.0f} s")
    return 0


def _render(df, meta: dict, workflow: dict, out: Path) -> None:
    from . import report

    try:
        report.figure(df, out)
    except Exception:  # noqa: BLE001 - the CSV and markdown still count
        traceback.print_exc()
    fig_rel = (out / "bench.png").as_posix() if not out.is_absolute() else "bench.png"
    md = report.markdown(df, meta, workflow, fig_rel)
    loader_md = out / "loader_README_section.md"  # benchmarks.loader_bench
    if loader_md.exists():
        md = md.rstrip("\n") + "\n\n#### Data loader (file-based ImageNet path)\n\n" + loader_md.read_text()
    (out / "README_section.md").write_text(md)


def render(out: Path, root: Path) -> int:
    """Redraw figure + markdown from saved measurements (the workflow table is re-read)."""
    from . import report

    df = report.read_csv(out / "bench.csv")
    meta = json.loads((out / "bench_meta.json").read_text())
    _render(df, meta, workflow_section(root), out)
    _log(f"re-rendered {out}/bench.png, bench.pdf, README_section.md from bench.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
