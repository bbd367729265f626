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
import functools
import hashlib
import itertools
import json
import math
import re
from pathlib import Path

import yaml

from .errors import ConfigError
from .registry import did_you_mean

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCALES = ("quick", "cpu", "paper")
COMMITTED_SCALES = ("cpu",)


@functools.lru_cache(maxsize=None)
def _load_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


def schema_defaults(node: dict):
    """The default config a schema describes: a node's ``default``, else (for an object) the
    defaults of its properties that have one. Keys without a default (``dataset.options``,
    ``train.betas``, ``resources.slurm_partition``) are absent unless a config sets them."""
    if "default" in node:
        return copy.deepcopy(node["default"])
    return {k: schema_defaults(sub) for k, sub in node.get("properties", {}).items() if _has_default(sub)}


def _has_default(node: dict) -> bool:
    return "default" in node or any(_has_default(sub) for sub in node.get("properties", {}).values())


#: The run config's defaults; the schema ``common/schemas/run.schema.json`` is their one source.
DEFAULTS: dict = schema_defaults(_load_schema("run.schema.json"))

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
def copy_data(x):
    """A deep copy of YAML/JSON data (dicts, lists, scalars; anything else goes to copy.deepcopy), several
    times faster than copy.deepcopy on such data, which grid expansion copies thousands of times."""
    if isinstance(x, dict):
        return {k: copy_data(v) for k, v in x.items()}
    if isinstance(x, list):
        return [copy_data(v) for v in x]
    return x if isinstance(x, (str, int, float, type(None))) else copy.deepcopy(x)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy_data(base)
    for k, v in (over or {}).items():
        if k in ("method", "model") and isinstance(v, (str, dict)):
            v = {"name": v} if isinstance(v, str) else v
            old = out.get(k) if isinstance(out.get(k), dict) else {}
            out[k] = copy_data(v) if v.get("name", old.get("name")) != old.get("name") else deep_merge(old, v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy_data(v)
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
def _strict_validator(schema: dict):
    """A Draft 2020-12 validator whose ``integer`` excludes ``15.0`` and ``true`` and whose
    ``number`` excludes ``true``, NaN and infinities."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def is_int(_, x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    def is_number(_, x) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        return isinstance(x, int) or math.isfinite(x)

    checker = base.TYPE_CHECKER.redefine_many({"integer": is_int, "number": is_number})
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


@functools.lru_cache(maxsize=None)
def _validator(name: str):
    return _strict_validator(_load_schema(name))


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
    msg = err.message
    x = err.instance
    if err.validator == "type" and isinstance(x, float) and not math.isfinite(x):
        msg = f"{x!r} is not a finite number"
    elif err.validator == "type" and isinstance(x, float) and x.is_integer() and "integer" in str(err.validator_value):
        msg = f"{x!r} is not an integer (write {int(x)})"
    return ConfigError(f"{where}: key {path!r}: {msg} (allowed:{rng.strip() and ' ' + rng.strip()})")


def validate(obj: dict, schema_name: str, where: str) -> None:
    v = _validator(schema_name)
    # shallowest first; at equal depth an unknown key (which gets a did-you-mean) before the rest
    errors = sorted(v.iter_errors(obj), key=lambda e: (len(list(e.absolute_path)),
                                                      e.validator != "additionalProperties", str(e.message)))
    if errors:
        raise _schema_error(errors[0], where)


_VALIDATED: set[str] = set()  # digests of run configs that passed validate_run_config


def _config_digest(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=repr).encode()).hexdigest()


def validate_run_config(cfg: dict, where: str = "run config") -> None:
    """Validate a resolved run config once: the schema, the cross-key rules a schema cannot
    express, the method's ``Params`` and ``check_run_config`` and the dataset/model names and
    keyword arguments. A config equal to one that passed before returns at once, so ``plan``,
    ``main`` and ``train`` can each call this without repeating the work."""
    digest = _config_digest(cfg)
    if digest in _VALIDATED:
        return
    validate(cfg, "run.schema.json", where)
    t, d = cfg["train"], cfg["dataset"]
    if t["schedule"] == "step" and not t["milestones"]:
        raise ConfigError(f"{where}: train.schedule='step' needs train.milestones (epochs at which lr *= gamma)")
    if any(m < 0 or m > t["epochs"] for m in t["milestones"]):
        raise ConfigError(f"{where}: train.milestones {t['milestones']} must lie in [0, train.epochs={t['epochs']}]")
    if t["warmup_epochs"] >= max(1, t["epochs"]) and t["warmup_epochs"] > 0:
        raise ConfigError(f"{where}: train.warmup_epochs={t['warmup_epochs']} must be < train.epochs={t['epochs']}")
    tf = d.get("transform") or {}
    for key in ("scale", "ratio"):
        if key in tf and tf[key][0] > tf[key][1]:
            raise ConfigError(f"{where}: key 'dataset.transform.{key}'={tf[key]}: the lower bound exceeds the upper")

    from .data import DATASETS, dataset_info
    from .methods import build_params, parse_method_spec
    from .models import MODELS
    from .registry import RegistryError

    dname = d["name"]
    dfactory = _lookup(DATASETS, dname, where, "dataset.name")  # unknown: lists the known names
    info = dataset_info(dname)
    if t["select"] in ("best_val", "best_val_acc") and not d.get("val_size") and not info.has_val:
        raise ConfigError(f"{where}: train.select={t['select']!r} needs a validation split (dataset.val_size > 0)")
    if t["select"] == "best_val_acc" and info.task != "classification":
        raise ConfigError(f"{where}: train.select='best_val_acc' needs a classification dataset; "
                          f"{dname!r} is {info.task}")
    options = d.get("options") or {}
    _check_kwargs(dfactory, options, where, "dataset.options", skip=("root", "download"))

    # the method: names, then the Params dataclasses (names and ranges)
    try:
        ms = parse_method_spec(cfg["method"], f"{where}: method")
    except RegistryError as e:
        raise ConfigError(f"{where}: key 'method.name': {e}") from None
    if info.task not in ms.base.tasks:
        raise ConfigError(f"{where}: method {ms.base_name!r} does not support the {info.task} dataset {dname!r} "
                          f"(supports: {', '.join(ms.base.tasks)})")
    params = build_params(ms.base.Params, ms.params, f"{where}: method {ms.base_name!r}")
    for tname, tcls, tvals in ms.terms:
        build_params(tcls.Params, tvals, f"{where}: method term {tname!r}")
        if info.task not in tcls.tasks:
            raise ConfigError(f"{where}: loss term {tname!r} does not support the {info.task} dataset {dname!r}")
    if ms.base.pairs_within_batch and t["batch_size"] < 2:
        raise ConfigError(f"{where}: key 'train.batch_size'={t['batch_size']}: method {ms.base_name!r} mixes each "
                          f"sample with another of its batch, which needs batch_size >= 2")

    # the model, and the image geometry both sides can be checked against
    mname = cfg["model"]["name"]
    mkw = {k: v for k, v in cfg["model"].items() if k != "name"}
    size = tf.get("input_size") or options.get("image_size", _default(dfactory, "image_size")) or info.image_size
    patch = mkw.get("patch_size")
    if mname.startswith("timm:"):
        m = re.search(r"patch(\d+)", mname)
        patch = patch if patch is not None else (int(m.group(1)) if m else None)
    else:
        mfactory = _lookup(MODELS, mname, where, "model.name")
        _check_kwargs(mfactory, mkw, where, "model", skip=("num_classes", "input_shape"))
        patch = mkw.get("patch_size", _default(mfactory, "patch_size"))
        if isinstance(patch, int) and isinstance(size, int) and patch > 0 and size % patch:
            divisors = [k for k in range(1, size + 1) if size % k == 0]
            raise ConfigError(f"{where}: key 'model.patch_size'={patch} does not divide the {dname!r} image size "
                              f"{size} (allowed: a divisor of {size}: {', '.join(map(str, divisors))})")
    static = {"params": params}
    if isinstance(size, int):
        static["image_size"] = size
    if isinstance(patch, int):
        static["patch_size"] = patch
    ms.base.check_run_config(cfg, static, where)
    _check_split_sizes(cfg, info, options, where)
    _VALIDATED.add(digest)


def _check_split_sizes(cfg: dict, info, options: dict, where: str) -> None:
    """dataset.train_size/val_size/test_size and a drop_last batch against the split sizes, when
    they are known before loading (declared at registration, or fixed by dataset.train_size)."""
    d, t = cfg["dataset"], cfg["train"]
    sizes = info.split_sizes(options) if callable(info.split_sizes) else info.split_sizes
    n_train = None
    if sizes:
        n_train, n_test = sizes["train"], sizes["test"]
        val_size = d.get("val_size") or 0
        if val_size and not info.has_val:
            if val_size >= n_train:
                raise ConfigError(f"{where}: key 'dataset.val_size'={val_size} must be smaller than the "
                                  f"{n_train} training samples of {d['name']!r}")
            n_train -= val_size
        if d.get("train_size") and d["train_size"] > n_train:
            raise ConfigError(f"{where}: key 'dataset.train_size'={d['train_size']} exceeds the {n_train} training "
                              f"samples of {d['name']!r}" + (f" left after dataset.val_size={val_size}" if val_size else ""))
        if d.get("test_size") and d["test_size"] > n_test:
            raise ConfigError(f"{where}: key 'dataset.test_size'={d['test_size']} exceeds the {n_test} test samples "
                              f"of {d['name']!r}")
    if d.get("train_size"):
        n_train = d["train_size"]
    if n_train is not None and t["drop_last"] and t["batch_size"] > n_train:
        raise ConfigError(f"{where}: key 'train.batch_size'={t['batch_size']} exceeds the {n_train} training samples "
                          f"and train.drop_last is true: an epoch would have 0 steps")


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


def _fill_defaults(value, node: dict):
    """Inside mappings a config gives where the default is null (``train.ema: {decay: ...}``),
    add the schema defaults of the keys it leaves out, so one setting has one spelling."""
    if not isinstance(value, dict):
        return
    for k, sub in node.get("properties", {}).items():
        if k in value:
            _fill_defaults(value[k], sub)
        elif "default" in sub:
            value[k] = copy.deepcopy(sub["default"])


def _fill_given_blocks(cfg: dict, node: dict) -> None:
    for k, sub in node.get("properties", {}).items():
        if k not in cfg:
            continue
        if sub.get("default", 0) is None and isinstance(cfg[k], dict):
            _fill_defaults(cfg[k], sub)
        elif isinstance(cfg[k], dict):
            _fill_given_blocks(cfg[k], sub)


def resolve(*layers: dict) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    for layer in layers:
        cfg = deep_merge(cfg, layer or {})
    _fill_given_blocks(cfg, _load_schema("run.schema.json"))
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


# --------------------------------------------------------------------------- YAML
class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """``yaml.SafeLoader`` that rejects duplicate keys and reads ``1e6``, ``5e-4``, ``-1E3`` as
    floats (YAML 1.1 wants a dot and a signed exponent, so SafeLoader reads them as strings).
    Parsed by libyaml where PyYAML has it (about 8x faster; the same data, see tests)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key: SafeConstructor reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str):
    """YAML text -> Python data with :class:`StrictLoader`; errors name ``where`` and the line."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = e.problem or str(e)
        if "duplicate key" in str(problem):
            raise ConfigError(f"{where}:{line} {problem}") from None
        raise ConfigError(f"{where}: not valid YAML:{line} {problem} ({e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {e}") from None


def read_text_utf8(path) -> str:
    """The file's text; a non-UTF-8 file is a ConfigError naming the file and the byte offset."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: byte 0x{raw[e.start]:02x} at byte offset {e.start} "
                          f"cannot be decoded (save the file as UTF-8)") from None


def load_yaml(path) -> dict:
    path = Path(path)
    data = parse_yaml(read_text_utf8(path), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def parse_json(text: str, where: str):
    """JSON text -> Python data, read like YAML configs: a duplicate key anywhere is a ConfigError
    naming ``where`` and the key (plain ``json.loads`` keeps the last value silently)."""

    def no_duplicates(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise ConfigError(f"{where}: duplicate key {k!r}")
            seen.add(k)
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON: {e}") from None


def parse_config_text(text: str, where: str, fmt: str = "yaml") -> dict:
    """A run config given as text (``fmt`` "json" or "yaml"): the one reader of every config input,
    files (:func:`load_config_file`) and ``--config-json`` alike."""
    data = parse_json(text, where) if fmt == "json" else parse_yaml(text, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return data


def load_config_file(path) -> dict:
    """A run config file, ``.json`` or YAML, read with the same rules (UTF-8, no duplicate keys)."""
    path = Path(path)
    return parse_config_text(read_text_utf8(path), str(path), "json" if path.suffix == ".json" else "yaml")


# --------------------------------------------------------------------------- grids
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
    papers = discover_papers(root)
    for name in only or []:
        if name not in papers:
            raise ConfigError(f"papers: unknown paper {name!r}.{did_you_mean(name, papers)} "
                              f"Known papers: {', '.join(papers) or '(none)'}")
    for paper, path in papers.items():
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


def validate_all(root=".") -> None:
    """Expand and validate every scale's grid of every paper (a typo in a scale that is not being
    run fails too); raises the first ConfigError, naming the file and the grid entry."""
    for path in discover_papers(root).values():
        exp = load_experiments(path)
        for scale in SCALES:
            expand_grid(exp, scale, str(path))


def apply_overrides(cfg: dict, items: list[str]) -> dict:
    """``["train.epochs=2", "method=mixup"]`` -> merged config (values parsed as YAML).

    Each override is checked as it is applied: when the config was valid before it and is not
    after it, the ConfigError names the override (``--set train.lr=abc: key 'train.lr': ...``)."""
    valid_so_far = _valid(cfg) if items else False
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item}: an override must look like KEY=VALUE (e.g. train.epochs=2)")
        key, val = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item}: {key!r} is not a dotted key like train.epochs")
        cfg = set_dotted(cfg, key, parse_yaml(val, f"--set {item}: value"))
        if valid_so_far:
            validate_run_config(resolve(cfg), f"--set {item}")
    return cfg


def _valid(cfg: dict) -> bool:
    try:
        validate_run_config(resolve(cfg))
    except (ConfigError, KeyError, TypeError):
        return False
    return True
