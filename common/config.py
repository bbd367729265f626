"""Run configs: defaults, merging, JSON-Schema validation, grid expansion and run ids.

A paper's ``experiments.yaml``::

    paper: cutmix                 # must equal the folder name
    defaults: {...}               # run-config keys shared by every scale (optional)
    scales:
      quick:
        defaults: {...}           # merged over the paper defaults
        grid:
          - set: {dataset: {name: digits}, model: {name: resnet8}}
            vary: {method: [erm, mixup, cutmix], seed: [0, 1, 2]}   # cartesian product
            zip: {seed: [0, 1], dataset.split_seed: [0, 1]}          # equal-length lists, in step
    claims: [...]                 # headline claims checked by the aggregation

``vary``/``zip`` keys may be dotted (``train.lr: [0.1, 0.05]``); a ``zip`` row is combined with
every ``vary`` combination. A run's identity is the SHA-256 of its resolved config (minus
``resources`` and runtime-only keys, and minus keys at their ``NEUTRAL_DEFAULTS`` value), so an
identical run requested by two papers is trained once; the id is
``<method>-<dataset>-<model>-s<seed>-<hash8>``.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from pathlib import Path

import yaml

from .methods import ConfigError
from .registry import did_you_mean

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCALES = ("quick", "cpu", "paper")

DEFAULTS: dict = {
    "seed": 0,
    "dataset": {"name": "digits", "root": None, "download": False, "train_size": None, "val_size": 0,
                "split_seed": 0, "test_size": None, "transform": None,
                "loader": {"workers": None, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 2}},
    "model": {"name": "resnet8"},
    "method": {"name": "erm"},
    "train": {
        "epochs": 10, "batch_size": 128, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
        "weight_decay": 5e-4, "schedule": "cosine", "milestones": [], "gamma": 0.1, "warmup_epochs": 0,
        "label_smoothing": 0.0, "clip_grad_norm": None, "select": "last", "drop_last": False,
        "augment": {}, "channels_last": False, "amp": False, "num_threads": None, "eval_every": 1,
        "repeated_aug": 1, "ema": None, "amp_dtype": "float16", "warmup_lr": None, "min_lr": 0.0,
        "cooldown_epochs": 0, "lr_per": "step", "no_weight_decay": None, "shuffle": True,
    },
    "eval": {"batch_size": 500, "calibration_bins": 15, "temperature_scaling": True,
             "occlusion": {"sizes": [0.25, 0.5], "modes": ["center", "random"]}},
    "resources": {"gpus": 0, "nodes": 1, "mem_mb": 4000, "runtime_min": 60, "cpus": 1},
}

IDENTITY_EXCLUDE = ("resources",)
#: keys of the run's environment, not of its result (dropped from the identity)
IDENTITY_EXCLUDE_DATASET = ("root", "download", "loader")

#: Keys added after runs were committed, with the value that reproduces the earlier behaviour.
#: ``run_hash`` leaves a key out of the identity while it has this value, so adding a key keeps
#: every existing run id; setting it to anything else gives a new id.
NEUTRAL_DEFAULTS: dict = {
    "dataset.transform": None,
    "train.repeated_aug": 1,
    "train.ema": None,
    "train.amp_dtype": "float16",
    "train.warmup_lr": None,
    "train.min_lr": 0.0,
    "train.cooldown_epochs": 0,
    "train.lr_per": "step",
    "train.no_weight_decay": None,
    "train.shuffle": True,
}


# --------------------------------------------------------------------------- merging
def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if k in ("method", "model") and isinstance(v, (str, dict)):
            v = {"name": v} if isinstance(v, str) else v
            old = out.get(k) if isinstance(out.get(k), dict) else {}
            out[k] = copy.deepcopy(v) if v.get("name", old.get("name")) != old.get("name") else deep_merge(old, v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict, key: str, value) -> dict:
    parts = key.split(".")
    if len(parts) == 1:
        return deep_merge(d, {key: value})
    nested: dict = {}
    cur = nested
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return deep_merge(d, nested)


# --------------------------------------------------------------------------- validation
def _load_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


def _schema_error(err, where: str) -> ConfigError:
    path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        known = sorted(err.schema.get("properties", {}))
        msgs = [f"unknown key {(path + '.' if path != '(top level)' else '') + k!r}.{did_you_mean(k, known)}" for k in extra]
        return ConfigError(f"{where}: {'; '.join(msgs)} Allowed keys here: {', '.join(known)}")
    rng = ""
    for kw in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "enum", "type"):
        if kw in err.schema:
            rng += f" {kw}={err.schema[kw]}"
    return ConfigError(f"{where}: key {path!r}: {err.message} (allowed:{rng.strip() and ' ' + rng.strip()})")


def validate(obj: dict, schema_name: str, where: str) -> None:
    import jsonschema

    schema = _load_schema(schema_name)
    v = jsonschema.Draft202012Validator(schema)
    # shallowest first; at equal depth an unknown key (which gets a did-you-mean) before the rest
    errors = sorted(v.iter_errors(obj), key=lambda e: (len(list(e.absolute_path)),
                                                      e.validator != "additionalProperties", str(e.message)))
    if errors:
        raise _schema_error(errors[0], where)


def validate_run_config(cfg: dict, where: str = "run config") -> None:
    """Schema check plus the semantic checks a schema cannot express; the method's own params
    are checked by its ``Params`` dataclass."""
    validate(cfg, "run.schema.json", where)
    t = cfg["train"]
    if t["schedule"] == "step" and not t["milestones"]:
        raise ConfigError(f"{where}: train.schedule='step' needs train.milestones (epochs at which lr *= gamma)")
    if any(m < 0 or m > t["epochs"] for m in t["milestones"]):
        raise ConfigError(f"{where}: train.milestones {t['milestones']} must lie in [0, train.epochs={t['epochs']}]")
    if t["warmup_epochs"] >= max(1, t["epochs"]) and t["warmup_epochs"] > 0:
        raise ConfigError(f"{where}: train.warmup_epochs={t['warmup_epochs']} must be < train.epochs={t['epochs']}")
    from . import data as _data  # noqa: F401  (dataset modules fill _HAS_VAL when imported)

    if t["select"] == "best_val" and not cfg["dataset"].get("val_size") and cfg["dataset"]["name"] not in _HAS_VAL:
        raise ConfigError(f"{where}: train.select='best_val' needs a validation split (dataset.val_size > 0)")
    # the method's Params validate names and ranges
    from .methods import METHODS, LossTerm, build_params

    spec = dict(cfg["method"])
    parts = str(spec.pop("name")).split("+")
    for i, part in enumerate(parts):
        cls = _lookup(METHODS, part, where, "method.name")
        if i == 0:
            rest = {k: v for k, v in spec.items() if k not in parts[1:]}
            if issubclass(cls, LossTerm):
                raise ConfigError(f"{where}: {part!r} is a loss term; write e.g. 'mixup+{part}'")
            build_params(cls.Params, rest, f"{where}: method {part!r}")
        else:
            if not issubclass(cls, LossTerm):
                raise ConfigError(f"{where}: {part!r} is a method, not a loss term; only loss terms may follow '+'")
            build_params(cls.Params, spec.get(part, {}), f"{where}: method term {part!r}")
    from .data import DATASETS
    from .models import MODELS

    dname = cfg["dataset"]["name"]
    dfactory = _lookup(DATASETS, dname, where, "dataset.name")  # unknown: lists the known names
    options = cfg["dataset"].get("options") or {}
    _check_kwargs(dfactory, options, where, "dataset.options", skip=("root", "download"))
    mname = cfg["model"]["name"]
    if not mname.startswith("timm:"):
        mfactory = _lookup(MODELS, mname, where, "model.name")
        mkw = {k: v for k, v in cfg["model"].items() if k != "name"}
        _check_kwargs(mfactory, mkw, where, "model", skip=("num_classes", "input_shape"))
        patch = mkw.get("patch_size", _default(mfactory, "patch_size"))
        size = options.get("image_size", _default(dfactory, "image_size")) or getattr(dfactory, "image_size", None)
        if isinstance(patch, int) and isinstance(size, int) and patch > 0 and size % patch:
            divisors = [d for d in range(1, size + 1) if size % d == 0]
            raise ConfigError(f"{where}: key 'model.patch_size'={patch} does not divide the {dname!r} image size "
                              f"{size} (allowed: a divisor of {size}: {', '.join(map(str, divisors))})")


def _lookup(registry, name: str, where: str, key: str):
    """``registry.get(name)``; an unknown name names the key and the file and lists the known ones."""
    from .registry import RegistryError

    try:
        return registry.get(name)
    except RegistryError as e:
        raise ConfigError(f"{where}: key {key!r}: {e}") from None


def _signature(factory):
    import inspect

    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _default(factory, param: str):
    sig = _signature(factory)
    p = sig.parameters.get(param) if sig else None
    return None if p is None or p.default is p.empty else p.default


def _check_kwargs(factory, kwargs: dict, where: str, prefix: str, skip=()) -> None:
    """Reject keyword arguments the factory does not take (before any job starts), with a did-you-mean."""
    import inspect

    sig = _signature(factory)
    if sig is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    names = [n for n, p in sig.parameters.items() if n not in skip
             and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for k in kwargs:
        if k not in names:
            raise ConfigError(f"{where}: unknown key '{prefix}.{k}'.{did_you_mean(k, names)} "
                              f"Allowed keys: {', '.join(names) or '(none)'}")


_HAS_VAL: set[str] = set()  # datasets that ship their own validation split (registered by papers)


def resolve(*layers: dict) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    for layer in layers:
        cfg = deep_merge(cfg, layer or {})
    ema = cfg.get("train", {}).get("ema") if isinstance(cfg.get("train"), dict) else None
    if isinstance(ema, dict):  # one spelling per EMA setting, so equal settings share one run id
        cfg["train"]["ema"] = {"warmup": False, "every": 1, **ema}
    return cfg


# --------------------------------------------------------------------------- identity
def _same_value(a, b) -> bool:
    """Equal as config values: ``0 == 0.0``, but ``True != 1`` and ``None`` only equals ``None``."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    return a == b


def identity(cfg: dict) -> dict:
    """The part of a resolved config that determines the result (what ``run_hash`` hashes)."""
    ident = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in IDENTITY_EXCLUDE}
    ident["dataset"] = {k: v for k, v in ident["dataset"].items() if k not in IDENTITY_EXCLUDE_DATASET}
    for dotted, neutral in NEUTRAL_DEFAULTS.items():
        *parents, leaf = dotted.split(".")
        node = ident
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and _same_value(node[leaf], neutral):
            del node[leaf]
    return ident


def run_hash(cfg: dict) -> str:
    ident = identity(cfg)
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9+]+", "_", str(s)).strip("_").lower()


def run_id(cfg: dict) -> str:
    return "-".join([
        _slug(cfg["method"]["name"]), _slug(cfg["dataset"]["name"]),
        _slug(cfg["model"]["name"].replace("timm:", "")), f"s{cfg['seed']}", run_hash(cfg),
    ])


# --------------------------------------------------------------------------- grids
def load_yaml(path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def expand_grid(exp: dict, scale: str, where: str) -> list[dict]:
    """All resolved run configs of one paper at one scale (validated)."""
    if scale not in SCALES:
        raise ConfigError(f"scale {scale!r} is unknown.{did_you_mean(scale, SCALES)} Known scales: {', '.join(SCALES)}")
    sc = (exp.get("scales") or {}).get(scale)
    if not sc:
        return []
    runs = []
    for gi, entry in enumerate(sc.get("grid") or []):
        at = f"{where}: scales.{scale}.grid[{gi}]"
        base = resolve(exp.get("defaults") or {}, sc.get("defaults") or {}, entry.get("set") or {})
        vary = entry.get("vary") or {}
        zipped = entry.get("zip") or {}
        keys = list(vary)
        for k in keys:
            if not isinstance(vary[k], list) or not vary[k]:
                raise ConfigError(f"{where}: scales.{scale}.grid[{gi}].vary.{k} must be a non-empty list")
        for k in zipped:
            if not isinstance(zipped[k], list) or not zipped[k]:
                raise ConfigError(f"{at}.zip.{k} must be a non-empty list")
            if k in vary:
                raise ConfigError(f"{at}: key {k!r} is in both vary and zip; give it in one of them")
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"{at}.zip: the lists must have equal length (they vary together); got "
                              + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        zkeys = list(zipped)
        zrows = list(zip(*(zipped[k] for k in zkeys))) if zkeys else [()]
        for combo in itertools.product(*(vary[k] for k in keys)):
            for zrow in zrows:
                cfg = base
                for k, v in list(zip(keys, combo)) + list(zip(zkeys, zrow)):
                    cfg = set_dotted(cfg, k, v)
                validate_run_config(cfg, f"{where} (scales.{scale}.grid[{gi}])")
                runs.append(cfg)
    return runs


def load_experiments(path) -> dict:
    path = Path(path)
    exp = load_yaml(path)
    validate(exp, "experiments.schema.json", str(path))
    if exp["paper"] != path.parent.name:
        raise ConfigError(f"{path}: paper: {exp['paper']!r} must equal the folder name {path.parent.name!r}")
    return exp


def discover_papers(root=".") -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(Path(root, "papers").glob("*/experiments.yaml"))}


def plan(scale: str, root=".", only: list[str] | None = None) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """``(runs, by_paper)``: run_id -> config for every run at ``scale``, and paper -> run ids."""
    runs: dict[str, dict] = {}
    by_paper: dict[str, list[str]] = {}
    for paper, path in discover_papers(root).items():
        if only and paper not in only:
            continue
        exp = load_experiments(path)
        ids = []
        for cfg in expand_grid(exp, scale, str(path)):
            rid = run_id(cfg)
            runs.setdefault(rid, cfg)
            if rid not in ids:
                ids.append(rid)
        by_paper[paper] = ids
    return runs, by_paper


def apply_overrides(cfg: dict, items: list[str]) -> dict:
    """``["train.epochs=2", "method=mixup"]`` -> merged config (values parsed as YAML)."""
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like KEY=VALUE (e.g. train.epochs=2)")
        key, val = item.split("=", 1)
        cfg = set_dotted(cfg, key.strip(), yaml.safe_load(val))
    return cfg
