"""Write the benchmark outputs: ``bench.csv`` (with a provenance header), ``bench.png``/``.pdf``
and ``README_section.md`` (the block the workflow inserts into the top-level README)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .timing import COLUMNS

FIG_NAME = "bench"


# --------------------------------------------------------------------------- CSV
def header_lines(meta: dict) -> list[str]:
    return [
        "mixrepro benchmarks: python -m benchmarks.run" + (" --quick" if meta.get("quick") else ""),
        f"cpu: {meta['cpu']} ({meta['cores']} logical cores; {meta['isa']})",
        f"torch {meta['torch']}, torchvision {meta['torchvision']}, timm {meta['timm']}, numpy {meta['numpy']}, "
        f"python {meta['python']}",
        f"threads: {meta['threads']} intra-op, {meta['interop_threads']} inter-op; load average (1 min) "
        f"{meta['load_avg_start']} at start, {meta.get('load_avg_end', '?')} at end",
        f"date (UTC): {meta['date_utc']}; git commit {meta['git_commit']}; total runtime {meta.get('runtime_s', 0):.0f} s",
        "ratio = median over interleaved rounds (column repeats) of variant time / baseline time on the column "
        "`clock` (cpu = process CPU time); ratio_q25/q75 = inter-quartile range; ratio_wall = the same on the wall clock",
    ]


def write_csv(rows: list[dict], meta: dict, path: Path) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    text = "".join(f"# {ln}\n" for ln in header_lines(meta)) + df.to_csv(index=False, float_format="%.6g")
    path.write_text(text)
    return df


def read_csv(path) -> pd.DataFrame:
    """Read ``bench.csv`` (skips the ``#`` provenance header); text columns come back as str."""
    df = pd.read_csv(path, comment="#")
    for col in ("section", "name", "model", "variant", "baseline", "clock", "unit", "target", "target_met",
                "status", "note"):
        df[col] = df[col].fillna("").astype(str)
    return df


# --------------------------------------------------------------------------- helpers
def _pct(r: float) -> str:
    return "-" if r is None or not math.isfinite(r) else f"{100 * (r - 1):+.1f}%"


def _x(r: float) -> str:
    return "-" if r is None or not math.isfinite(r) else f"{r:.3f}x"


def _iqr(row) -> str:
    a, b = row["ratio_q25"], row["ratio_q75"]
    return "" if not (math.isfinite(a) and math.isfinite(b)) else f" [{_pct(a)}, {_pct(b)}]"


def _ms_signed(frac: float, base_s: float) -> str:
    if not (math.isfinite(frac) and math.isfinite(base_s)):
        return "-"
    d = frac * base_s
    return ("+" if d >= 0 else "-") + _ms(abs(d))


def _ms(s: float) -> str:
    if not math.isfinite(s):
        return "-"
    return f"{1e3 * s:.1f} ms" if abs(s) >= 1e-3 else f"{1e6 * s:.0f} us"


def verdict(row) -> str:
    """'met' or 'missed ...' (by how much, and why where known) for a row with a numeric target."""
    tmax = row["target_ratio_max"]
    r = row["ratio"]
    if not (isinstance(tmax, float) and math.isfinite(tmax)) or not math.isfinite(r):
        return ""
    if r <= tmax:
        return "met"
    if str(row["name"]).startswith("trainer_vs_bare"):
        speed = 1 / r
        msg = f"missed: {speed:.3f}x the bare loop's images/s vs >= 0.95x (short by {100 * (0.95 - speed):.1f} points)"
    elif row["section"] == "mixing_ops":
        msg = f"missed: {100 * (r - 1):.0f}% slower than timm"
        if "in-place" not in str(row["variant"]):
            msg += " (this form allocates a new batch; timm overwrites its input)"
    else:
        msg = f"missed by {100 * (r - tmax):.1f} points ({_pct(r)} vs <= {_pct(tmax)})"
    q25 = row["ratio_q25"]
    if isinstance(q25, float) and math.isfinite(q25) and q25 <= tmax:
        msg += "; within noise (the lower quartile meets it)"
    return msg


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in ln) + " |" for ln in lines]
    return "\n".join(out)


# --------------------------------------------------------------------------- markdown
def markdown(df: pd.DataFrame, meta: dict, workflow: dict[str, pd.DataFrame], fig_rel: str) -> str:
    ok = df[df["status"] == "ok"]
    md = []
    md.append(f"Measured {meta['date_utc']} UTC on **{meta['cpu']}** ({meta['cores']} logical cores, "
              f"{meta['isa']}), torch {meta['torch']}, torchvision {meta['torchvision']}, timm {meta['timm']}, "
              f"{meta['threads']} intra-op thread(s), load average {meta['load_avg_start']} -> "
              f"{meta.get('load_avg_end', '?')} (a shared machine), git `{meta['git_commit']}`, "
              f"{'`--quick` smoke mode, ' if meta.get('quick') else ''}{meta.get('runtime_s', 0):.0f} s in total. "
              f"Every figure is a ratio of two variants timed in one process, interleaved round by round "
              f"(a new random order each round), median over the rounds (the `repeats` column of "
              f"[`results/bench/bench.csv`](results/bench/bench.csv)) with the inter-quartile range in brackets; "
              f"clock = this process's CPU time (one intra-op thread), which other processes barely disturb; "
              f"wall-clock ratios are in the CSV too. Rerun: `python -m benchmarks.run --out results/bench` "
              f"(or `snakemake bench`).")
    md.append("")

    # ---- targets
    e2e_of = {"step_overhead_isolated": "step_overhead", "attention_vs_mixer_isolated": "attention_vs_mixer",
              "trainer_vs_bare_isolated": "trainer_vs_bare"}

    def e2e(r):
        name = e2e_of.get(r["name"])
        if not name:
            return "-"
        m = ok[(ok["name"] == name) & (ok["model"] == r["model"]) & (ok["variant"] == r["variant"])
               & (ok["baseline"] == r["baseline"])]
        if m.empty:
            return "-"
        m = m.iloc[0]
        if name == "trainer_vs_bare":
            return f"{1 / m['ratio']:.3f}x images/s" + (f" [{1 / m['ratio_q75']:.3f}, {1 / m['ratio_q25']:.3f}]"
                                                        if math.isfinite(m["ratio_q25"]) else "")
        return _pct(m["ratio"]) + _iqr(m)

    tl = []
    for _, r in ok[ok["target"].astype(str) != ""].iterrows():
        if str(r["name"]).startswith("trainer_vs_bare"):
            shown = f"{1 / r['ratio']:.3f}x images/s"
        elif r["section"] == "mixing_ops":
            shown = f"{_x(r['ratio'])} timm's time" + _iqr_x(r)
        else:
            shown = _pct(r["ratio"]) + _iqr(r)
        what = f"{r['variant']} vs {r['baseline']}" + (f" ({r['model']})" if r["model"] != "-" else "")
        tl.append([what, r["target"], shown, e2e(r), verdict(r) or "-"])
    for tgt in workflow.get("_targets", []):
        tl.append(tgt[:3] + ["-"] + tgt[3:])
    if tl:
        md.append("**Targets.** *Precise* = the isolated estimate (the method's or trainer's own work "
                  "measured on a cheap stand-in model with many repeats, relative to the real step; see below); "
                  "*end to end* = full steps of the real model, whose resolution is the A/A control's spread.")
        md.append("")
        md.append(_table(["measurement", "target", "precise", "end to end [IQR]", "verdict"], tl))
        md.append("")

    # ---- 1. methods
    m = ok[ok["section"] == "method_overhead"]
    if len(m):
        md.append("**1. Step overhead of each method over the same `erm` step** (same model copy, batch and "
                  "optimiser; every batch mixed: `prob`/`switch_prob`/`maskmix_prob` = 1, so this is the cost "
                  "per mixed batch). *End to end* = median ratio of full steps (`erm (repeat)` is the A/A control: "
                  "an identical erm variant, i.e. the noise floor); *isolated* = the method's own work outside "
                  "the network (mixing, partner draws, loss terms) measured with a near-free probe model and "
                  "divided by the real `erm` step (single-forward methods only).")
        md.append("")
        lines = []
        for model in m["model"].unique():
            mm = m[m["model"] == model]
            e = mm[mm["name"].isin(["aa_control", "step_overhead"])]
            iso = mm[mm["name"] == "step_overhead_isolated"].set_index("variant")
            for _, r in e.iterrows():
                i = iso.loc[r["variant"]] if r["variant"] in iso.index else None
                lines.append([model, r["variant"], str(r["note"]).split(";")[0], _ms(r["baseline_s"]),
                              _pct(r["ratio"]) + _iqr(r), _ms_signed(r["ratio"] - 1, r["baseline_s"]),
                              "-" if i is None else f"{_pct(i['ratio'])} ({_ms(i['variant_s'] - i['baseline_s'])})"])
        md.append(_table(["model", "method", "kind", "erm step (cpu)", "end to end [IQR]", "= per step",
                          "isolated (method-side)"], lines))
        md.append("")
        mlp = m[(m["model"] == "mlp") & (m["name"] == "step_overhead")]
        if len(mlp):
            extra = [(r["ratio"] - 1) * r["baseline_s"] for _, r in mlp.iterrows()]
            lo, hi = min(extra), max(extra)
            rng = _ms(lo) if len(extra) == 1 else f"{_ms(lo)} to {_ms(hi)}"
            secs = f"{lo * 6200:.1f}" if len(extra) == 1 else f"{lo * 6200:.1f}-{hi * 6200:.1f}"
            md.append(f"The MLP step takes only {_ms(mlp.iloc[0]['baseline_s'])}, so fixed per-step work weighs "
                      f"heavily there: {rng} per step (lambda and partner draws, the second hidden pass of "
                      f"manifold mixing, C-Mixup's kernel rows against all 1003 training labels), i.e. {secs} s "
                      f"over a whole Airfoil run (100 epochs x 62 steps of 16).")
            md.append("")
        a = m[m["name"] == "attention_vs_mixer"]
        ai = m[m["name"] == "attention_vs_mixer_isolated"].set_index(["variant", "baseline"])
        if len(a):
            md.append("Attention-label methods against the same ViT step with the plain mixer. The class-token "
                      "attention row is recomputed from the last block's `qkv` output by a hook "
                      "(`common/attention.py`), so no extra forward pass; *isolated* = method-side difference "
                      "measured on a depth-1 copy of the ViT (same last-block attention shape), relative to the "
                      "real mixer step:")
            md.append("")
            md.append(_table(["method", "vs", "isolated", "end to end [IQR]", "wall-clock ratio"],
                             [[r["variant"], r["baseline"],
                               (f"{_pct(ai.loc[(r['variant'], r['baseline'])]['ratio'])}"
                                f" ({_ms(ai.loc[(r['variant'], r['baseline'])]['variant_s'] - r['baseline_s'])})"
                                if (r["variant"], r["baseline"]) in ai.index else "-"),
                               _pct(r["ratio"]) + _iqr(r), _x(r["ratio_wall"])]
                              for _, r in a.iterrows()]))
            md.append("")

    # ---- 2. trainer
    t = ok[ok["section"] == "trainer"]
    if len(t):
        md.append("**2. Trainer vs a bare PyTorch loop** (same init, optimiser and batches; resnet20 w16, erm; "
                  "images/s on the CPU clock; the trainer's figure is its own `train_images_per_sec`, epoch loop "
                  "only):")
        md.append("")
        md.append(_table(["variant", "baseline", "variant images/s", "baseline images/s", "speed ratio [IQR]", "how"],
                         [[r["variant"], r["baseline"], f"{r['variant_images_per_s']:.0f}",
                           f"{r['baseline_images_per_s']:.0f}",
                           f"{1 / r['ratio']:.3f}x" + (f" [{1 / r['ratio_q75']:.3f}, {1 / r['ratio_q25']:.3f}]"
                                                       if math.isfinite(r["ratio_q25"]) else ""),
                           "isolated" if "isolated" in r["name"] else ("A/A" if r["name"] == "aa_control"
                                                                       else "end to end")]
                          for _, r in t.iterrows()]))
        md.append("")

    # ---- 3. data path
    d = ok[ok["section"] == "data_path"]
    if len(d):
        ds = d[d["name"] == "data_vs_step"]
        dt = d[d["name"] == "data_vs_torchvision"]
        parts = []
        if len(ds):
            r = ds.iloc[0]
            parts.append(f"our data path (`Loader` + `BatchTransform`: index a uint8 batch, pad-and-crop, flip, "
                         f"normalise as batched tensor ops) delivers {r['variant_images_per_s']:.0f} images/s, "
                         f"{100 * r['ratio']:.1f}% [{100 * r['ratio_q25']:.1f}, {100 * r['ratio_q75']:.1f}] of the "
                         f"time of one resnet20 training step per batch ({r['baseline_images_per_s']:.0f} images/s)")
        if len(dt):
            r = dt.iloc[0]
            parts.append(f"the same augmentation image by image with torchvision v2 then stacked is "
                         f"{1 / r['ratio']:.1f}x slower ({r['baseline_images_per_s']:.0f} images/s)")
        md.append("**3. Data path alone:** " + "; ".join(parts) + ".")
        md.append("")

    # ---- 4. ops
    o = ok[ok["section"] == "mixing_ops"]
    if len(o):
        times = {}
        for _, r in o.iterrows():
            times[r["variant"]] = r["variant_s"]
            times[r["baseline"]] = r["baseline_s"]
        md.append("**4. Batch mixing ops** (one call = lambda, partners, mixed 128x3x32x32 batch and labels; "
                  "timm `Mixup(mode='batch')` overwrites its input and builds dense targets; torchvision v2 "
                  "returns a new batch and dense targets):")
        md.append("")
        o = o[o["name"] != "component"]
        comp = ok[(ok["section"] == "mixing_ops") & (ok["name"] == "component")].set_index("variant")
        vs = o[o["name"] == "ours_vs_timm"].set_index("variant")
        md.append(_table(["op", "time per call (cpu)", "vs timm [IQR]"],
                         [[k, _ms(v), (_x(vs.loc[k, "ratio"]) if k in vs.index else "")]
                          for k, v in times.items()]))
        md.append("")
        md.append("The methods call the copying ops (`mix_inputs`, `paste_box` without `inplace`), so the "
                  "clean batch stays intact for loss terms and multi-pass methods; the in-place forms have "
                  "timm's contract (the input batch is overwritten). The difference is a fraction of a "
                  "millisecond per step (see the isolated overheads above)."
                  + (f" Each of our calls also draws lambda ({_ms(comp.loc['ours: lambda draw', 'variant_s'])}) "
                     f"and the partners ({_ms(comp.loc['ours: partner draw', 'variant_s'])}) from a seeded "
                     f"`torch.Generator` (so a resumed run replays the same draws) where timm uses NumPy's "
                     f"global RNG." if {"ours: lambda draw", "ours: partner draw"} <= set(comp.index) else ""))
        md.append("")

    # ---- 5. options
    c = df[df["section"] == "cpu_options"]
    if len(c):
        md.append("**5. CPU options on the ResNet `erm` step** (ratio < 1 = faster than the default: fp32, NCHW, "
                  f"deterministic algorithms on as in the trainer, {meta['threads']} thread(s)):")
        md.append("")
        lines = []
        for _, r in c.iterrows():
            if r["status"] != "ok":
                lines.append([r["variant"], r["baseline"], r["status"], r["note"], ""])
                continue
            lines.append([r["variant"], r["baseline"], f"{_x(r['ratio'])}{_iqr_x(r)} ({r['clock']})",
                          _option_advice(r), _option_context(r)])
        md.append(_table(["trial", "vs", "time ratio [IQR]", "reading", "in mixrepro"], lines))
        md.append("")

    # ---- workflow
    for scale, wf in workflow.items():
        if scale.startswith("_") or wf is None or wf.empty:
            continue
        from .workflow_times import format_seconds

        md.append(f"**Workflow wall time, `{scale}` scale** (sum of Snakemake's per-run benchmark files "
                  f"`results/{scale}/benchmarks/*.tsv`; serial seconds: runs are single-threaded, so on 2 idle cores "
                  f"the elapsed time is about half the CPU-time sum; wall-clock sums also count time spent waiting "
                  f"for a core when more jobs than cores ran; a run shared by two papers counts in both rows):")
        one = "cpu_one_machine_s" in wf and wf["cpu_one_machine_s"].notna().any()
        if one:  # same paragraph as the heading: common.aggregate.cli.workflow_elapsed reads heading + table
            md[-1] += (" *cpu, one machine*: CPU times of runs committed on different days (often different "
                       "machines) put in the units of the largest batch's machine before they are added "
                       "(`python -m benchmarks.rebench`, [`rebench.csv`](rebench.csv)).")
        md.append("")
        cpu = "cpu_one_machine_s" if one else "cpu_s"
        md.append(_table(["paper", "runs measured / planned", "wall (sum)", "cpu (sum)"]
                         + (["cpu, one machine (sum)"] if one else []) + ["~ elapsed on 2 idle cores", "longest run"],
                         [[r["paper"], f"{r['runs_measured']}/{r['runs_planned']}"]
                          + ([format_seconds(r["wall_s"]), format_seconds(r["cpu_s"])]
                             + ([format_seconds(r[cpu])] if one else [])
                             + [format_seconds(r[cpu] / 2), format_seconds(r["max_run_s"])]
                             if r["runs_measured"] else ["-"] * (5 if one else 4))
                          for _, r in wf.iterrows()]))
        md.append("")

    # ---- skipped
    s = df[(df["status"] != "ok") & (df["section"] != "cpu_options")]
    if len(s):
        md.append("Not measured: " + "; ".join(f"{r['variant']} on {r['model']} ({r['status']}: {r['note']})"
                                             for _, r in s.iterrows()) + ".")
        md.append("")
    md.append(f"![benchmarks]({fig_rel})")
    return "\n".join(md).rstrip() + "\n"


def _option_context(r) -> str:
    v = str(r["variant"])
    if v == "channels_last":
        return "opt-in per run config: `train.channels_last: true` (CNNs)"
    if v == "bf16 autocast":
        return "not used on CPU (`train.amp` is CUDA fp16 only)"
    if v == "deterministic off":
        return "the trainer keeps deterministic algorithms on (same seed, same metrics)"
    if v.startswith("threads"):
        return ("Snakemake runs one thread per job (`threads_per_run: 1`, `OMP_NUM_THREADS`); "
                + str(r["note"]).split("; ")[-1])
    if v.startswith("batch"):
        return "batch size is part of each paper's recipe; not changed for speed"
    if v == "torch.compile":
        parts = str(r["note"]).split(";")
        return "not wired into the trainer; " + ";".join(parts[:2]).strip()
    return ""


def _iqr_x(r) -> str:
    a, b = r["ratio_q25"], r["ratio_q75"]
    return "" if not (math.isfinite(a) and math.isfinite(b)) else f" [{a:.3f}, {b:.3f}]"


def _option_advice(r) -> str:
    q25, q75, med = r["ratio_q25"], r["ratio_q75"], r["ratio"]
    if r["unit"] == "image":
        word = "per image"
    else:
        word = "per step"
    if q75 < 0.97:
        return f"faster {word} ({100 * (1 - med):.0f}% less time)"
    if q25 > 1.03:
        return f"slower {word} ({100 * (med - 1):.0f}% more time)"
    return "no clear difference"


# --------------------------------------------------------------------------- figure
def figure(df: pd.DataFrame, out_dir: Path) -> None:
    """2 x 3 panels of horizontal bars (median, IQR whiskers); method panels also mark the isolated
    estimate (black diamond). Red = a target missed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = df[df["status"] == "ok"]
    meth = ok[ok["section"] == "method_overhead"]
    panels = [
        ("Step overhead vs erm: resnet20",
         meth[meth["name"].isin(["aa_control", "step_overhead"]) & (meth["model"] == "resnet20")], "pct"),
        ("Step overhead: ViT (vs erm; attention labels vs mixer)",
         meth[meth["name"].isin(["aa_control", "step_overhead", "attention_vs_mixer"]) & (meth["model"] == "vit")],
         "pct"),
        ("Step overhead vs erm: MLP (regression)",
         meth[meth["name"].isin(["aa_control", "step_overhead"]) & (meth["model"] == "mlp")], "pct"),
        ("Mixing ops: time vs timm / torchvision",
         ok[(ok["section"] == "mixing_ops") & (ok["name"] != "component")], "ratio"),
        ("Trainer vs bare loop; data path vs model step", ok[ok["section"].isin(["trainer", "data_path"])], "ratio"),
        ("CPU options (resnet20 erm step)", ok[ok["section"] == "cpu_options"], "ratio"),
    ]
    iso_name = {"step_overhead": "step_overhead_isolated", "attention_vs_mixer": "attention_vs_mixer_isolated"}
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    for ax, (title, d, kind) in zip(axes.flat, panels):
        ax.set_title(title, fontsize=10)
        if d.empty:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        labels = []
        for _, r in d.iterrows():
            lab = str(r["variant"]) if r["baseline"] == "erm" else f"{r['variant']} vs {r['baseline']}"
            if str(r["name"]).endswith("_isolated"):
                lab += " [isolated]"
            labels.append(lab)
        y = np.arange(len(d))
        conv = (lambda a: 100 * (a - 1)) if kind == "pct" else (lambda a: a)
        ref = 0.0 if kind == "pct" else 1.0
        med = conv(d["ratio"].to_numpy(float))
        err = np.nan_to_num(np.vstack([np.clip(med - conv(d["ratio_q25"].to_numpy(float)), 0, None),
                                       np.clip(conv(d["ratio_q75"].to_numpy(float)) - med, 0, None)]))
        colors = []
        iso_x = []
        for _, r in d.iterrows():
            t = r["target_ratio_max"]
            missed = isinstance(t, float) and math.isfinite(t) and r["ratio"] > t
            iso = None
            if r["name"] in iso_name:
                m = ok[(ok["name"] == iso_name[r["name"]]) & (ok["model"] == r["model"])
                       & (ok["variant"] == r["variant"]) & (ok["baseline"] == r["baseline"])]
                if len(m):
                    iso = m.iloc[0]
                    t2 = iso["target_ratio_max"]
                    missed = missed or (isinstance(t2, float) and math.isfinite(t2) and iso["ratio"] > t2)
            iso_x.append(np.nan if iso is None else conv(iso["ratio"]))
            colors.append("tab:red" if missed else ("0.6" if r["name"] == "aa_control" else "tab:blue"))
        ax.barh(y, med - ref, left=ref, xerr=err, color=colors, alpha=0.85, capsize=2)
        if np.isfinite(np.array(iso_x, float)).any():
            ax.plot(iso_x, y, "kD", ms=4)
        ax.axvline(ref, color="k", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("overhead, % (median over rounds, IQR)" if kind == "pct"
                      else "time ratio (median, IQR); < 1 = faster", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        span = np.nanmax(np.abs(np.concatenate([med - ref, err[1]])))
        if kind == "pct" and span > 60:
            ax.set_xscale("symlog", linthresh=10)
        if kind == "ratio" and np.nanmax(med) / max(np.nanmin(med[med > 0]) if (med > 0).any() else 1, 1e-9) > 20:
            ax.set_xscale("log")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color="tab:blue", alpha=0.85, label="median ratio over rounds (whiskers: IQR)"),
                        Patch(color="0.6", alpha=0.85, label="A/A control (noise floor)"),
                        Patch(color="tab:red", alpha=0.85, label="target missed"),
                        Line2D([], [], color="k", marker="D", ls="", ms=4, label="isolated estimate (method-side work)")],
               loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("mixrepro benchmarks", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    for ext in ("png", "pdf"):
        fig.savefig(out_dir / f"{FIG_NAME}.{ext}", dpi=110, metadata={"CreationDate": None} if ext == "pdf" else None)
    plt.close(fig)
