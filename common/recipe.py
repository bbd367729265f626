"""Recipe cards: each paper's resolved ``paper``-scale configs side by side with the authors' values.

``papers/<paper>/recipe.yaml`` lists, per paper-scale setting, the official value of each pinned
hyperparameter (a dotted run-config key) and where it was read (file and line of the official code,
or the paper's section/table), plus ``differences``: keys we deliberately set otherwise and items
that are not run-config keys, each with its reason. This module

* checks the resolved ``paper`` configs (``common.config.plan("paper")``) against those values
  (:func:`check`; ``tests/test_recipes.py`` runs it, so a drift from the recipe fails CI), including
  that every run on GPUs states its expected memory per GPU (``resources.gpu_mem_gb``, informative)
  and a setting covering it names where that figure comes from (``gpu_memory.source``), and
* renders ``papers/<paper>/RECIPE.md`` from the same data (:func:`card`).

    python -m common.recipe                  # write every paper's RECIPE.md
    python -m common.recipe --paper cutmix   # one paper
    python -m common.recipe --check          # exit 1 with a diff if a committed card is out of date
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from pathlib import Path

from .config import ConfigError, load_experiments, load_yaml, plan, validate

RECIPE_FILE = "recipe.yaml"
CARD_FILE = "RECIPE.md"
MISSING = object()


# --------------------------------------------------------------------------- loading
def recipe_path(paper: str, root=".") -> Path:
    return Path(root, "papers", paper, RECIPE_FILE)


def load_recipe(paper: str, root=".") -> dict:
    """``papers/<paper>/recipe.yaml``, schema-checked; errors name the file and the key."""
    path = recipe_path(paper, root)
    if not path.is_file():
        raise ConfigError(f"{path}: missing (every paper with a `paper` scale needs a recipe.yaml)")
    rec = load_yaml(path)
    validate(rec, "recipe.schema.json", str(path))
    if rec["paper"] != paper:
        raise ConfigError(f"{path}: paper: {rec['paper']!r} must equal the folder name {paper!r}")
    ids = [s["id"] for s in rec["settings"]]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{path}: settings ids must be unique; repeated: {', '.join(dup)}")
    return rec


# --------------------------------------------------------------------------- values
def get_dotted(cfg: dict, key: str):
    """The value at a dotted key of a resolved config, or ``MISSING``."""
    cur = cfg
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def same(a, b) -> bool:
    """Equality of YAML values; floats compare with a relative tolerance of 1e-9, ints equal floats."""
    if a is MISSING or b is MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0) if (a or b) else a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def matches(cfg: dict, match: dict | None) -> bool:
    """``cfg`` has every ``match`` value (a key that is not set counts as null)."""
    for key, want in (match or {}).items():
        have = get_dotted(cfg, key)
        have = None if have is MISSING else have
        options = want["one_of"] if isinstance(want, dict) and "one_of" in want else [want]
        if not any(same(have, w) for w in options):
            return False
    return True


def fmt(v) -> str:
    if v is MISSING:
        return "(not set)"
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


# --------------------------------------------------------------------------- checking
def setting_runs(setting: dict, runs: dict[str, dict]) -> dict[str, dict]:
    return {rid: cfg for rid, cfg in runs.items() if matches(cfg, setting["match"])}


def rows(setting: dict, runs: dict[str, dict]) -> list[dict]:
    """One row per pinned value and keyed difference: our values over the covered runs, the
    official value, its source and the status (``matches`` | ``differs: <reason>`` | ``DIFFERS``)."""
    covered = setting_runs(setting, runs)
    out = []
    entries = [(e, None) for e in setting.get("values") or []]
    entries += [(e, e["reason"]) for e in setting.get("differences") or [] if "key" in e]
    for e, reason in entries:
        sel = [(rid, cfg) for rid, cfg in covered.items() if matches(cfg, e.get("when"))]
        ours = [(rid, get_dotted(cfg, e["key"])) for rid, cfg in sel]
        bad = [(rid, v) for rid, v in ours if not same(v, e["value"])]
        distinct = []
        for _, v in ours:
            if not any(same(v, d) for d in distinct):
                distinct.append(v)
        if reason is None:
            status = "matches" if not bad else "DIFFERS"
        else:
            status = f"differs: {reason}" if bad else "STALE (matches the official value; remove the difference)"
        out.append({"key": e["key"], "when": e.get("when"), "ours": distinct, "official": e["value"],
                    "source": e["source"], "verified": e.get("verified", True), "status": status,
                    "bad": bad, "runs": [rid for rid, _ in sel], "reason": reason})
    return out


def claim_applies(claim: dict, runs: dict[str, dict]) -> bool:
    """True when ``runs`` hold both arms of the claim (after its ``match``)."""
    names = {cfg["method"]["name"] for cfg in runs.values() if matches(cfg, claim.get("match"))}

    def present(arm: str) -> bool:  # a method name, or a label "name(param=value,...)" of one variant
        return arm in names or any(arm.startswith(n + "(") for n in names)

    return present(claim["method"]) and present(claim["baseline"])


def claim_statistic_problems(paper: str, rec: dict, exp: dict, runs: dict[str, dict]) -> list[str]:
    """Claims evaluated at the paper scale must use the statistic of the settings they compare."""
    problems = []
    for c in exp.get("claims") or []:
        if c.get("scales") and "paper" not in c["scales"]:
            continue
        stat = c.get("statistic", "last")
        for s in rec["settings"]:
            if "statistic" not in s:
                continue
            if claim_applies(c, setting_runs(s, runs)) and stat != s["statistic"]["value"]:
                problems.append(f"{paper}: claim {c['id']!r} uses statistic {stat!r} at the paper scale but setting "
                                f"{s['id']!r} reports {s['statistic']['value']!r} ({s['statistic']['source']})")
    return problems


def uses_gpus(cfg: dict) -> bool:
    return bool(get_dotted(cfg, "resources.gpus") not in (MISSING, None, 0))


def gpu_memory_problems(paper: str, rec: dict, runs: dict[str, dict]) -> list[str]:
    """Every GPU run states ``resources.gpu_mem_gb`` and a setting covering it names the source."""
    sourced = {rid for s in rec["settings"] if "gpu_memory" in s for rid in setting_runs(s, runs)}
    problems = []
    for rid, cfg in sorted(runs.items()):
        if not uses_gpus(cfg):
            continue
        if get_dotted(cfg, "resources.gpu_mem_gb") in (MISSING, None):
            problems.append(f"{paper}: paper-scale run {rid} uses GPUs but states no resources.gpu_mem_gb "
                            f"(expected memory per GPU)")
        if rid not in sourced:
            problems.append(f"{paper}: paper-scale run {rid} uses GPUs but no setting of {RECIPE_FILE} covering it "
                            f"names where its resources.gpu_mem_gb comes from (gpu_memory.source)")
    return problems


def check(paper: str, rec: dict, runs: dict[str, dict], exp: dict | None = None) -> list[str]:
    """Every disagreement between the resolved ``paper`` configs and the recipe, as messages naming
    paper, setting, key, ours vs official and the source. Empty = the configs are the recipe."""
    problems = []
    covered = set()
    for s in rec["settings"]:
        sel = setting_runs(s, runs)
        covered |= set(sel)
        if not sel:
            problems.append(f"{paper}: setting {s['id']!r} matches no paper-scale run (match: {s['match']})")
            continue
        for r in rows(s, runs):
            if not r["runs"]:
                problems.append(f"{paper}: setting {s['id']!r} key {r['key']!r}: `when` {r['when']} selects no run")
            elif r["status"] == "DIFFERS":
                rid, v = r["bad"][0]
                more = f" and {len(r['bad']) - 1} more" if len(r["bad"]) > 1 else ""
                problems.append(f"{paper}: setting {s['id']!r} key {r['key']!r}: ours {fmt(v)} vs official "
                                f"{fmt(r['official'])} (source: {r['source']}; run {rid}{more})")
            elif r["status"].startswith("STALE"):
                problems.append(f"{paper}: setting {s['id']!r} key {r['key']!r} is listed as a difference but every "
                                f"run has the official value {fmt(r['official'])}: remove the difference")
    for rid in sorted(set(runs) - covered):
        problems.append(f"{paper}: paper-scale run {rid} is covered by no setting of {RECIPE_FILE}")
    problems += gpu_memory_problems(paper, rec, runs)
    if exp is not None:
        problems += claim_statistic_problems(paper, rec, exp, runs)
    return problems


# --------------------------------------------------------------------------- rendering
def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def gpu_memory_text(covered: dict[str, dict]) -> str:
    """"`model` n GB (g GPUs)" for each model (and each distinct figure) among the covered GPU runs."""
    seen: dict[str, list] = {}
    for cfg in covered.values():
        if uses_gpus(cfg):
            entry = (get_dotted(cfg, "resources.gpu_mem_gb"), cfg["resources"]["gpus"])
            if entry not in seen.setdefault(cfg["model"]["name"], []):
                seen[cfg["model"]["name"]].append(entry)
    return "; ".join(f"`{m}` " + " / ".join(f"{fmt(gb)} GB ({n} GPU{'s' if n > 1 else ''})" for gb, n in sorted(v, key=str))
                     for m, v in sorted(seen.items()))


def card(paper: str, rec: dict, runs: dict[str, dict], exp: dict) -> str:
    """RECIPE.md of one paper (deterministic: a function of recipe.yaml and the resolved configs)."""
    lines = [f"# Recipe card: {exp.get('title', paper)}", "",
             "Generated by `python -m common.recipe` from the resolved `paper`-scale configs "
             f"(`experiments.yaml`) and the official values in [`{RECIPE_FILE}`]({RECIPE_FILE}); do not edit. "
             "`tests/test_recipes.py` fails when a config drifts from the recipe or this card is out of date.", "",
             "Sources read:", ""]
    for name, src in rec["sources"].items():
        if isinstance(src, dict):
            at = f" at `{src['commit']}`" if src.get("commit") else ""
            note = f" ({src['note']})" if src.get("note") else ""
            lines.append(f"- {name}: [{src['repo']}](https://github.com/{src['repo']}){at}{note}")
        else:
            lines.append(f"- {name}: {src}")
    lines += ["", "Status: `matches` = every covered run has the official value; `differs: reason` = a "
              "deliberate difference; *(not verified)* marks a value we could not read at its source.", ""]
    for s in rec["settings"]:
        covered = setting_runs(s, runs)
        lines += [f"## {s['title']} (`{s['id']}`)", ""]
        methods = sorted({cfg["method"]["name"] for cfg in covered.values()})
        seeds = sorted({cfg["seed"] for cfg in covered.values()})
        lines.append(f"{len(covered)} runs; methods {', '.join(f'`{m}`' for m in methods)}; seeds "
                     f"{', '.join(map(str, seeds))}.")
        if "statistic" in s:
            claims = [c["id"] for c in exp.get("claims") or []
                      if (not c.get("scales") or "paper" in c["scales"]) and claim_applies(c, covered)]
            lines.append(f"Reported statistic: `{s['statistic']['value']}` ({s['statistic']['source']})"
                         + (f"; claims: {', '.join(f'`{c}`' for c in claims)}." if claims else "."))
        if "gpu_memory" in s:
            lines.append(f"Expected memory per GPU (`resources.gpu_mem_gb`, informative): {gpu_memory_text(covered)}; "
                         f"source: {s['gpu_memory']['source']}.")
        lines += ["", "| key | applies to | ours | official | source | status |", "|---|---|---|---|---|---|"]
        for r in rows(s, runs):
            when = ", ".join(f"{k}={fmt(v['one_of'] if isinstance(v, dict) and 'one_of' in v else v)}" for k, v in (r["when"] or {}).items())
            src = r["source"] + ("" if r["verified"] else " *(not verified)*")
            ours = " / ".join(fmt(v) for v in r["ours"]) or "–"
            lines.append(f"| `{r['key']}` | {_cell(when or 'all')} | {_cell(ours)} | {_cell(fmt(r['official']))} | "
                         f"{_cell(src)} | {_cell(r['status'])} |")
        items = [d for d in s.get("differences") or [] if "item" in d]
        if items:
            lines += ["", "Other differences (not run-config keys):", ""]
            lines += [f"- **{d['item']}**: {d['reason']}" for d in items]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- CLI
def build(paper: str, root=".", runs_all: dict | None = None, by_paper: dict | None = None):
    """``(recipe, runs of this paper, experiments, card text)``."""
    if runs_all is None or by_paper is None:
        runs_all, by_paper = plan("paper", root, only=[paper])
    runs = {rid: runs_all[rid] for rid in by_paper.get(paper, [])}
    rec = load_recipe(paper, root)
    exp = load_experiments(Path(root, "papers", paper, "experiments.yaml"))
    return rec, runs, exp, card(paper, rec, runs, exp)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.recipe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--paper", action="append", help="paper folder name (repeatable; default: every paper with a paper scale)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if a card is out of date or a config drifts")
    ap.add_argument("--root", default=".", help="repository root (default: .)")
    a = ap.parse_args(argv)
    try:
        runs_all, by_paper = plan("paper", a.root)
        papers = a.paper or sorted(p for p, ids in by_paper.items() if ids)
        status = 0
        for paper in papers:
            if paper not in by_paper:
                raise ConfigError(f"--paper {paper!r}: no papers/{paper}/experiments.yaml under {a.root}")
            rec, runs, exp, text = build(paper, a.root, runs_all, by_paper)
            problems = check(paper, rec, runs, exp)
            for p in problems:
                print(f"recipe drift: {p}", file=sys.stderr)
            status |= bool(problems)
            path = Path(a.root, "papers", paper, CARD_FILE)
            old = path.read_text() if path.is_file() else ""
            if a.check:
                if old != text:
                    sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                               f"{path} (committed)", f"{path} (generated)"))
                    print(f"{path}: out of date; run `python -m common.recipe --paper {paper}`", file=sys.stderr)
                    status = 1
            elif old != text:
                tmp = path.with_suffix(".md.tmp")
                tmp.write_text(text)
                tmp.replace(path)
                print(f"wrote {path}")
        return status
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
