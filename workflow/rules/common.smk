"""Reads and validates the workflow config, makes the plan of the scale once (common.workplan) and
decides from file contents what is already current (common.freshness); then the thin helpers the rules
call. No rules here, and nothing is written while the Snakefile is read."""
import difflib
import json
import os
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from common.config import SCALES, ConfigError, check_workflow_config_inputs
from common.freshness import assess, cross_record, remove_stamps
from common.workplan import Plan

ROOT = Path(workflow.basedir)
ENV = "../../environment.yml"  # conda env of every rule (relative to the rule files)
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.json"

# `python` in every job is the interpreter that runs Snakemake (whose environment has the packages),
# even when Snakemake was started by path without activating that environment
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")


def fail(message):
    """Stop before any job with a message and exit status 1 (a user error, not a traceback)."""
    print(f"mixrepro: error: {message}", file=sys.stderr)
    sys.exit(1)


def check_workflow_config():
    """config/config.yaml + --config against the schema (which also fills in its defaults)."""
    try:  # duplicate keys in a config file or in --config (Snakemake keeps the last silently)
        check_workflow_config_inputs(workflow.configfiles, workflow.config_settings.config_args)
    except ConfigError as e:
        fail(f"workflow config: {e}")
    allowed = sorted(json.loads(SCHEMA.read_text())["properties"])
    for key in config:
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=1)
            fail(f"workflow config (config/config.yaml + --config): unknown key '{key}'."
                 f"{f' Did you mean {near[0]!r}?' if near else ''} Allowed keys: {', '.join(allowed)}")
    try:
        validate(config, str(SCHEMA))
    except WorkflowError as e:
        reason = str(e).split("\n\n")[0].replace("Error validating config file.\n", "")
        fail(f"workflow config (config/config.yaml + --config) does not match {SCHEMA.relative_to(ROOT)}: {reason}")


check_workflow_config()
SCALE = config["scale"]
if config.get("data_root"):  # jobs inherit the environment
    os.environ.update(MIXREPRO_DATA=str(config["data_root"]))
try:
    PLAN = Plan.build(ROOT, SCALE, config["papers"])
    FRESH = assess(PLAN)
    MISSING_DATA = PLAN.missing_data(FRESH.stale)
except ValueError as e:  # ConfigError; an unreadable results/<scale>/code_pins.json
    fail(str(e))
if MISSING_DATA:
    fail(MISSING_DATA)
if FRESH.stale and workflow.is_main_process:
    shown = ", ".join(sorted(FRESH.stale)[:10]) + (" ..." if len(FRESH.stale) > 10 else "")
    print(f"mixrepro: {len(FRESH.stale)} run(s) were computed by other code than today's and will be rerun "
          f"(common.codehash): {shown}", file=sys.stderr)


# ------------------------------------------------------------------ training
def run_config(run_id):
    """The resolved config of a run of this plan; an unknown id is a clear error, not a KeyError."""
    try:
        return PLAN.runs[run_id]
    except KeyError:
        raise WorkflowError(PLAN.unknown_run_message(run_id)) from None


def run_config_json(wc):
    scale = wc.tree.partition("/")[0]
    if scale != SCALE:
        raise WorkflowError(f"results/{wc.tree}/runs/{wc.run_id}: a run of scale '{scale}', but the workflow plans "
                            f"scale '{SCALE}' (--config scale=...)")
    return json.dumps(run_config(wc.run_id), sort_keys=True)


# ------------------------------------------------------------------ aggregates
def current_if(current, inputs):
    """`inputs` ({name: files}, common.workplan), marked ancient() when what is built from them is current
    (common.freshness): then no file time (e.g. a fresh clone's checkout order) makes Snakemake rebuild it."""
    return {k: [ancient(f) for f in files] if current else files for k, files in inputs.items()}


def whole_set_only(what):
    if PLAN.subset:
        raise WorkflowError(f"{what} covers every paper, but papers={list(PLAN.subset)} plans only a subset: run "
                            f"without papers= to update it (a subset never rewrites cross-paper files).")


def table_job_inputs(wc):
    return current_if(wc.paper in FRESH.adopted, PLAN.table_job_inputs(wc.paper))


def paper_record_inputs(wc):
    return current_if(wc.paper in FRESH.adopted, PLAN.record_job_inputs(wc.paper))


def summary_inputs(wc):
    whole_set_only(f"results/{SCALE}/summary.*")
    return current_if(FRESH.cross, PLAN.summary_job_inputs())


def cross_record_inputs(wc):
    whole_set_only(cross_record(SCALE))
    return current_if(FRESH.cross, PLAN.record_job_inputs())


def readme_inputs(wc):
    whole_set_only("the README blocks")
    return current_if(FRESH.readmes, PLAN.readme_job_inputs())


def all_targets():
    """common.workplan.Plan.targets; a paper subset writes nothing cross-paper, and says so."""
    if PLAN.subset and workflow.is_main_process:
        print(f"mixrepro: papers={list(PLAN.subset)} is a subset: the cross-paper aggregates (results/{SCALE}/"
              f"summary.*, matrix.*, cross/) and the README blocks are left as they are; run without papers= "
              f"to update them.", file=sys.stderr)
    return PLAN.targets(FRESH.stale)
