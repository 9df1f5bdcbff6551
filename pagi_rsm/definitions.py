"""Experiment definitions: parse, validate and resolve them into run configurations.

A definition is a YAML or JSON file with pagi's schema:

```yaml
description: one line saying what the experiment is           # optional
base: other_definition         # optional: start from that file (a path relative to this one,
                               # or a shipped name) and change only what this file sets
experiment-options:            # what to run
  workflow: grammar            # registered name (`pagi list`) or dotted path to a Workflow class
  component: sequence_memory_stack
  dataset: grammar
  batches: 40000
  seed: 1234
  hparams_override:            # component hyperparameters (the component's default_hparams keys)
    batch_size: 400
workflow-options:              # the workflow's default_options() keys
  checkpoint_interval: 1000
parameter-sweeps:              # optional; every combination is its own run
  hparams: {cells_per_group: [4, 6]}           # grid: each key is an axis
  experiment-options: {seed: [1, 2]}
  workflow-options: [{render: same}, {render: random}]   # list of points: one axis
```

Every option has a default in its class; the file overrides the defaults and command-line
flags override the file (``flags > sweep combination > file > class defaults``).
With ``base:``, the file is laid over its base key by key: each key of `experiment-options`,
`hparams_override`, `workflow-options` and `parameter-sweeps` that the file sets replaces the
base's value for that key (a mapping value replaces the base's whole mapping); everything else
comes from the base, which may itself have a base.
`resolve` turns a parsed definition plus overrides into one `RunConfig` per sweep combination,
after checking every key and type. Mistakes raise `DefinitionError`, whose message names the
file, the key and the accepted keys; nothing is started before resolution succeeds.

Files are parsed with `yaml.SafeLoader` (what `yaml.safe_load` uses, plus a duplicate-key check)
or `json`; nothing in a definition is ever evaluated.

Example:

```python
from pagi_rsm import definitions
raw = definitions.load("grammar/embedded_reber")         # a shipped definition, or a file
[config] = definitions.resolve(raw, source="embedded_reber.yaml",
                               experiment_overrides={"batches": 10})
print(config.hparams["batch_size"], config.batches)
```
"""
import copy
import dataclasses
import itertools
import json
import os

import yaml

from pagi_rsm import registry
from pagi_rsm.options import REQUIRED, Option, OptionError, Options, type_name

TOP_LEVEL_KEYS = ("description", "base", "experiment-options", "workflow-options",
                  "parameter-sweeps")
SWEEP_SECTIONS = ("hparams", "workflow-options", "experiment-options")
JIT_COMPILE_CHOICES = ("auto", "true", "false")
DISTRIBUTION_CHOICES = ("default", "mirrored", "multi_worker")


def _jit_text(value):
    return ("true" if value else "false") if isinstance(value, bool) else value


_NAME = "a non-empty string (a registered name or a dotted path)"
_DIRECTORY = "a directory path (a string)"

# Experiment options. `None` for workflow/component/dataset/batches/seed means "the workflow
# class decides" (Workflow.default_experiment_options()). Options with `flag=True` are also
# `pagi run` / `pagi show` flags (pagi_rsm.cli builds them from these declarations).
EXPERIMENT_OPTIONS = Options(
    Option("workflow", None, "registered workflow name (see `pagi list`) or dotted path to a "
           "class", kind="str", non_empty=True, describe=_NAME, nullable=False, flag=True),
    Option("component", None, "registered component name or dotted path; default: the "
           "workflow's", kind="str", non_empty=True, describe=_NAME, nullable=False),
    Option("dataset", None, "registered dataset name or dotted path; default: the workflow's",
           kind="str", non_empty=True, describe=_NAME, nullable=False),
    Option("batches", None, "number of training batches (the run's limit; a batch = one chunk "
           "of time for B streams)", kind="int", low=1, nullable=False, flag=True),
    Option("seed", None, "random seed of data, initialisation and dropout", kind="int", low=0,
           high=2 ** 31, high_open=True, describe="an integer in [0, 2**31)", nullable=False,
           flag=True),
    Option("hparams_override", {}, "component hyperparameters that differ from its defaults",
           kind="mapping", nullable=True, convert=lambda v: {} if v is None else copy.deepcopy(v),
           describe="a mapping of component hyperparameters"),
    Option("summary_dir", None, "directory for TensorBoard summaries and results.json; default "
           "runs/<workflow>-<date-time>, or the earlier run's when resuming", kind="str",
           non_empty=True, describe=_DIRECTORY, flag=True),
    Option("checkpoint", None, "checkpoint directory: resume from its latest checkpoint, or "
           "write there; default <summary_dir>/checkpoints", kind="str", non_empty=True,
           describe=_DIRECTORY, flag=True),
    Option("jit_compile", "auto", "XLA-compile the training step: auto (only on GPU/TPU), true, "
           "false", choices=JIT_COMPILE_CHOICES, convert=_jit_text, flag=True),
    Option("distribution", "default", "tf.distribute strategy: default (one device), mirrored "
           "(all GPUs, or all logical CPUs), multi_worker (from TF_CONFIG)",
           choices=DISTRIBUTION_CHOICES, flag=True),
    Option("deterministic", True, "TensorFlow op determinism (same seed -> same metrics)",
           describe="true or false",
           flag=True),
)
# Keys a sweep may vary in experiment-options.
SWEEPABLE_EXPERIMENT_OPTIONS = ("batches", "seed", "dataset", "jit_compile", "deterministic")


class DefinitionError(ValueError):
    """A definition or an override that cannot be run. The message says where and why."""


# --- parsing ------------------------------------------------------------------------------------

class _StrictSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that rejects a key given twice in one mapping (YAML keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_pairs(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_text(text, source, fmt="yaml"):
    """Parses definition text (`fmt` "yaml" or "json") into Python objects.

    Raises:
      DefinitionError: not valid YAML/JSON; the message names `source` and the line.
    """
    try:
        if fmt == "json":
            return json.loads(text, object_pairs_hook=_json_pairs)
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 (SafeLoader subclass)
    except json.JSONDecodeError as e:
        raise DefinitionError(f"{source}: not valid JSON: {e.msg} at line {e.lineno}, "
                              f"column {e.colno}") from None
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e)
        raise DefinitionError(f"{source}: not valid YAML: {problem}{where}") from None
    except ValueError as e:  # duplicate JSON key
        raise DefinitionError(f"{source}: not valid JSON: {e}") from None


SHIPPED_PACKAGE = "pagi_rsm.definition_files"
_SUFFIXES = (".yaml", ".yml", ".json")


def _shipped_root():
    import importlib.resources
    try:
        return importlib.resources.files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        return None


def shipped():
    """``[(name, description)]`` of the definitions that ship with the package, sorted.

    A name such as ``grammar/embedded_reber`` is what ``--definition`` accepts.
    """
    root = _shipped_root()
    out = []
    if root is None:
        return out
    for folder in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
        if folder.name.startswith(("_", ".")):
            continue
        for file in sorted(folder.iterdir(), key=lambda f: f.name):
            stem, suffix = os.path.splitext(file.name)
            if suffix not in _SUFFIXES:
                continue
            try:
                raw = parse_text(file.read_text(encoding="utf-8"), file.name,
                                 "json" if suffix == ".json" else "yaml")
                description = raw.get("description") if isinstance(raw, dict) else None
            except DefinitionError:
                description = None
            out.append((f"{folder.name}/{stem}", description or ""))
    return out


def locate(name):
    """The file a ``--definition`` value names: a path on disk, else a shipped definition.

    A shipped definition is named by its folder and file name, with or without the suffix
    (``grammar/embedded_reber``). Returns a path string.

    Raises:
      DefinitionError: neither exists; the message lists the shipped names.
    """
    name = os.fspath(name)
    if os.path.exists(name):
        return name
    root = _shipped_root()
    if root is not None and not os.path.isabs(name):
        candidates = [name] + [name + s for s in _SUFFIXES if not name.endswith(s)]
        for candidate in candidates:
            file = root.joinpath(*candidate.replace("\\", "/").split("/"))
            if file.is_file():
                return str(file)
    names = ", ".join(n for n, _ in shipped()) or "(none)"
    raise DefinitionError(f"definition file not found: {name} (nor a shipped definition; "
                          f"shipped: {names})")


def load(path, _chain=()):
    """Reads and structurally checks a definition (YAML, or JSON for *.json).

    `path` is a file path or the name of a shipped definition (see `locate`). A ``base:`` key
    names another definition that this one changes (see the module docstring); it is looked up
    beside this file first, then as `locate` does, and merged here, so the result has no
    ``base`` key.

    Checks the top-level keys, that each section is a mapping, the keys and types of
    `experiment-options` and the shape of `parameter-sweeps`. Keys of `hparams_override` and
    `workflow-options` are checked by `resolve`, which knows the component and workflow.

    Returns:
      The definition as a dict.

    Raises:
      DefinitionError: missing or unreadable file, invalid syntax, unknown key or wrong type.
    """
    path = locate(path)
    if os.path.isdir(path):
        raise DefinitionError(f"definition must be a file, got the directory {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DefinitionError(f"cannot read definition file {path}: {e}") from None
    fmt = "json" if path.lower().endswith(".json") else "yaml"
    raw = parse_text(text, path, fmt)
    if isinstance(raw, dict) and "base" in raw:
        raw = dict(raw)
        base = _load_base(raw.pop("base"), path, _chain)
        raw = _lay_over(base, check_structure(raw, path))
    return check_structure(raw, path)


def _load_base(name, path, chain):
    """The checked, merged definition that `path`'s ``base: name`` names."""
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"{path}: base must name a definition file (a path relative to "
                              f"this file, or a shipped name such as video/rsm), got {name!r}")
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    found = next((c for c in [beside] + [beside + s for s in _SUFFIXES]
                  if os.path.isfile(c)), None)
    if found is None:
        try:
            found = locate(name)
        except DefinitionError as e:
            raise DefinitionError(f"{path}: base {name!r}: {e}") from None
    here = os.path.realpath(path)
    chain = chain + (here,)
    if os.path.realpath(found) in chain:
        cycle = " -> ".join(chain + (os.path.realpath(found),))
        raise DefinitionError(f"{path}: base {name!r} makes a cycle: {cycle}")
    return load(found, chain)


def _lay_over(base, child):
    """`child` over `base`, key by key within each section (both checked structures)."""
    out = {"description": child["description"] or base["description"]}
    for section in ("experiment-options", "workflow-options", "parameter-sweeps"):
        out[section] = {**base[section], **child[section]}
    hparams = {**(base["experiment-options"].get("hparams_override") or {}),
               **(child["experiment-options"].get("hparams_override") or {})}
    if hparams:
        out["experiment-options"]["hparams_override"] = hparams
    return copy.deepcopy(out)


def _accepted(keys):
    return ", ".join(sorted(keys))


def check_structure(raw, source):
    """Checks the parts of a parsed definition that do not depend on the workflow.

    Returns a normalised copy (missing sections are empty mappings).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DefinitionError(
            f"{source}: a definition must be a mapping with the keys {_accepted(TOP_LEVEL_KEYS)}; "
            f"got {_type_name(raw)}")
    if "base" in raw:
        raise DefinitionError(f"{source}: base is read by definitions.load (it names a file "
                              f"relative to the definition's own); pass the file to load()")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise DefinitionError(
                f"{source}: unknown top-level key {key!r}; accepted keys: "
                f"{_accepted(TOP_LEVEL_KEYS)}")
    out = {"description": raw.get("description")}
    if out["description"] is not None and not isinstance(out["description"], str):
        raise DefinitionError(f"{source}: description must be a string, got "
                              f"{_type_name(out['description'])}")
    for section in ("experiment-options", "workflow-options", "parameter-sweeps"):
        value = raw.get(section)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise DefinitionError(f"{source}: {section} must be a mapping, got {_type_name(value)}")
        out[section] = copy.deepcopy(value)
    out["experiment-options"] = check_experiment_options(
        out["experiment-options"], source, "experiment-options")
    out["parameter-sweeps"] = _check_sweeps(out["parameter-sweeps"], source)
    return out


_type_name = type_name


def check_experiment_options(options, source, where, allowed=None):
    """Checks keys and values of an `experiment-options` mapping; returns a checked copy."""
    allowed = tuple(allowed or EXPERIMENT_OPTIONS)
    out = {}
    for key, value in options.items():
        if key not in allowed:
            raise DefinitionError(f"{source}: unknown key {key!r} in {where}; accepted keys: "
                                  f"{_accepted(allowed)}")
        try:
            out[key] = EXPERIMENT_OPTIONS[key].check(value, f"{source}: {where}.{key}")
        except OptionError as e:
            raise DefinitionError(str(e)) from None
    return out


def _check_sweeps(sweeps, source):
    out = {}
    for section, spec in sweeps.items():
        where = f"{source}: parameter-sweeps.{section}"
        if section not in SWEEP_SECTIONS:
            raise DefinitionError(f"{source}: unknown key {section!r} in parameter-sweeps; "
                                  f"accepted keys: {_accepted(SWEEP_SECTIONS)}")
        if isinstance(spec, dict):
            for key, values in spec.items():
                if not isinstance(values, list) or not values:
                    raise DefinitionError(f"{where}.{key} must be a non-empty list of values, "
                                          f"got {values!r}")
        elif isinstance(spec, list):
            if not spec or not all(isinstance(p, dict) for p in spec):
                raise DefinitionError(f"{where} must be a mapping of key: [values] or a "
                                      f"non-empty list of mappings, got {spec!r}")
        else:
            raise DefinitionError(f"{where} must be a mapping of key: [values] or a list of "
                                  f"mappings, got {_type_name(spec)}")
        if section == "experiment-options":
            keys = spec.keys() if isinstance(spec, dict) else {k for p in spec for k in p}
            for key in keys:
                if key not in SWEEPABLE_EXPERIMENT_OPTIONS:
                    raise DefinitionError(
                        f"{where}: key {key!r} cannot be swept; accepted keys: "
                        f"{_accepted(SWEEPABLE_EXPERIMENT_OPTIONS)}")
        out[section] = copy.deepcopy(spec)
    return out


def parse_override(text, flag):
    """Parses a command-line mapping such as ``'{cols: 100, k: 20}'`` (YAML or JSON).

    Returns {} for an empty string. Raises DefinitionError naming `flag`.
    """
    if text is None or not str(text).strip():
        return {}
    value = parse_text(text, flag)
    if not isinstance(value, dict):
        raise DefinitionError(f"{flag} must be a YAML/JSON mapping such as "
                              f"'{{name: value}}', got {text!r}")
    return value


# --- resolution ---------------------------------------------------------------------------------

@dataclasses.dataclass
class RunConfig:
    """Everything one run needs, fully resolved (defaults < file < sweep < flags).

    Attributes:
      experiment: every experiment option; `hparams_override` holds the complete component
        hyperparameters (defaults included), so `as_definition()` is itself a valid definition.
      workflow_options: every workflow option.
      workflow_class: the Workflow class to run.
      component_class: the component class (its constructor takes the hparams); imported on
        first use, so resolving (and `pagi show`) needs no TensorFlow.
      dataset_fn: the dataset factory, imported on first use.
      source: where the definition came from (file path or "<defaults>").
      description: the definition's description, if any.
      trial: sweep trial name (sub-directory), None when not part of a sweep.
      trial_values: the swept values of this trial, ``{name: value}`` (for TensorBoard HParams).
      sweep_domains: ``{name: [all values]}`` of the whole sweep (empty when not a sweep).
    """
    experiment: dict
    workflow_options: dict
    workflow_class: type
    source: str = "<defaults>"
    description: str = None
    trial: str = None
    trial_values: dict = dataclasses.field(default_factory=dict)
    sweep_domains: dict = dataclasses.field(default_factory=dict)

    @property
    def hparams(self):
        return self.experiment["hparams_override"]

    @property
    def component_class(self):
        return _lookup("component", self.experiment["component"], self.source)

    @property
    def dataset_fn(self):
        return _lookup("dataset", self.experiment["dataset"], self.source)

    @property
    def batches(self):
        return self.experiment["batches"]

    @property
    def seed(self):
        return self.experiment["seed"]

    @property
    def workflow(self):
        return self.experiment["workflow"]

    def as_definition(self):
        """The resolved options as a definition mapping (no sweep section)."""
        out = {}
        if self.description:
            out["description"] = self.description
        out["experiment-options"] = copy.deepcopy(self.experiment)
        out["workflow-options"] = copy.deepcopy(self.workflow_options)
        return out

    def to_yaml(self):
        """`as_definition()` as YAML: block mappings, short lists on one line."""
        return to_yaml(self.as_definition())


class _Dumper(yaml.SafeDumper):
    """Block-style mappings; lists of scalars in flow style (``cols: [200]``)."""


def _represent_list(dumper, data):
    flow = all(not isinstance(v, (list, tuple, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)


def to_yaml(mapping):
    """Dumps a definition mapping as readable YAML (keys in their given order)."""
    return yaml.dump(mapping, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=100, allow_unicode=True)


def component_options(component, source="<defaults>"):
    """The `Options` declaring a component's hparams, or None when it declares none.

    `component` is a registered name, a dotted path or a class. A registered component names
    its declaration module in the registry, so nothing heavy is imported; otherwise the class's
    ``options`` attribute is used, or, for a user's class that only has ``default_hparams`` (a
    dict or a function returning one), options inferred from those defaults.
    """
    if isinstance(component, str):
        declared = registry.options("component", component)
        if declared is not None:
            return declared
        component = _lookup("component", component, source)
    declared = getattr(component, "options", None)
    if isinstance(declared, Options):
        return declared
    defaults = getattr(component, "default_hparams", None)
    if defaults is None:
        return None
    if callable(defaults):
        defaults = defaults()
    return Options(*[Option(k, v, kind=None if v is not None else "any",
                            nullable=isinstance(v, str) or v is None)
                     for k, v in dict(defaults).items()])


def component_defaults(component):
    """The component's default hparams as a dict, or None when it declares none."""
    options = component_options(component)
    return None if options is None else options.defaults()


def _lookup(kind, name, source):
    try:
        return registry.lookup(kind, name)
    except registry.NameNotFoundError as e:
        raise DefinitionError(f"{source}: {e}") from None
    except (ImportError, SyntaxError) as e:
        raise DefinitionError(f"{source}: cannot import {kind} {name!r}: "
                              f"{type(e).__name__}: {e}") from None


def _merge_checked(options, layers, section):
    """`options` resolved from override `layers` [(where, mapping)], as DefinitionErrors."""
    try:
        return options.resolve(layers, section=section, check_required=False)
    except OptionError as e:
        raise DefinitionError(str(e)) from None


def _sweep_axes(sweeps):
    """Axes of a sweep: list of (section, [point dicts]) — one per grid key or point list."""
    axes = []
    for section in SWEEP_SECTIONS:
        spec = sweeps.get(section)
        if not spec:
            continue
        if isinstance(spec, dict):
            for key, values in spec.items():
                axes.append((section, [{key: v} for v in values]))
        else:
            axes.append((section, [dict(p) for p in spec]))
    return axes


def _hparam_value(value):
    """A value TensorBoard's HParams plugin accepts (bool, int, float, str)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def resolve(definition=None, source=None, *, workflow=None, experiment_overrides=None,
            hparams_overrides=None, workflow_option_overrides=None, check_component=True):
    """Resolves a definition and overrides into one `RunConfig` per sweep combination.

    Args:
      definition: a dict from `load` (or `check_structure`), or None for "class defaults only".
      source: name of the definition for messages (its file path).
      workflow: workflow name from the command line (overrides the file).
      experiment_overrides: experiment options from the command line (batches, seed, ...).
      hparams_overrides: component hparams from the command line.
      workflow_option_overrides: workflow options from the command line.
      check_component: construct the component once from the resolved hparams (no weights are
        built) so that out-of-range values fail here, before anything starts.

    Returns:
      A list of RunConfig (length 1 without `parameter-sweeps`).

    Raises:
      DefinitionError: an unknown key, a wrong type, an unknown workflow/component/dataset, or
        hparams the component rejects.
    """
    source = source or "<defaults>"
    definition = check_structure(definition or {}, source)
    flags_exp = check_experiment_options(dict(experiment_overrides or {}), "command line",
                                         "flags")
    if workflow is not None:
        flags_exp["workflow"] = check_experiment_options({"workflow": workflow}, "command line",
                                                         "--workflow")["workflow"]
    file_exp = definition["experiment-options"]
    workflow_name = flags_exp.get("workflow") or file_exp.get("workflow")
    if not workflow_name:
        raise DefinitionError(f"{source}: no workflow given; pass --workflow=NAME or set "
                              f"experiment-options.workflow (registered workflows: "
                              f"{', '.join(registry.names('workflow'))})")
    workflow_class = _lookup("workflow", workflow_name, source)
    if not (callable(getattr(workflow_class, "default_experiment_options", None))
            and isinstance(getattr(workflow_class, "options", None), Options)):
        raise DefinitionError(f"{source}: workflow {workflow_name!r} ({workflow_class!r}) "
                              f"is not a pagi_rsm Workflow (it needs default_experiment_options() "
                              f"and an `options` declaration)")

    sweeps = definition["parameter-sweeps"]
    axes = _sweep_axes(sweeps)
    combos = list(itertools.product(*[points for _, points in axes])) if axes else [()]
    # HParams names: plain keys; prefixed by the section when a name is used in two sections.
    section_of = {}
    for section, points in axes:
        for p in points:
            for k in p:
                section_of.setdefault(k, set()).add(section)

    def hp_name(section, key):
        return f"{section}.{key}" if len(section_of.get(key, ())) > 1 else key

    domains = {}
    for section, points in axes:
        for p in points:
            for k, v in p.items():
                values = domains.setdefault(hp_name(section, k), [])
                if _hparam_value(v) not in values:
                    values.append(_hparam_value(v))

    configs = []
    for index, combo in enumerate(combos):
        sweep = {s: {} for s in SWEEP_SECTIONS}
        trial_values = {}
        for (section, _), point in zip(axes, combo):
            sweep[section].update(point)
            for k, v in point.items():
                trial_values[hp_name(section, k)] = _hparam_value(v)
        sweep_where = f"{source}: parameter-sweeps"
        sweep["experiment-options"] = check_experiment_options(
            sweep["experiment-options"], source, "parameter-sweeps.experiment-options",
            allowed=SWEEPABLE_EXPERIMENT_OPTIONS)
        config = _resolve_one(
            workflow_name, workflow_class, definition, source, flags_exp,
            sweep, sweep_where, dict(hparams_overrides or {}),
            dict(workflow_option_overrides or {}), check_component)
        if axes:
            config.trial = f"trial_{index:03d}"
            config.trial_values = trial_values
            config.sweep_domains = domains
        configs.append(config)
    return configs


def _resolve_one(workflow_name, workflow_class, definition, source, flags_exp, sweep,
                 sweep_where, flag_hparams, flag_options, check_component):
    # Experiment options: built-in defaults < workflow class < file < sweep < flags.
    experiment = EXPERIMENT_OPTIONS.defaults()
    class_exp = dict(workflow_class.default_experiment_options())
    unknown = set(class_exp) - set(EXPERIMENT_OPTIONS)
    if unknown:
        raise DefinitionError(f"workflow {workflow_name!r}: default_experiment_options() has "
                              f"unknown keys {sorted(unknown)}")
    class_hparams = dict(class_exp.pop("hparams_override", None) or {})
    experiment.update(copy.deepcopy(class_exp))
    file_exp = dict(definition["experiment-options"])
    file_hparams = file_exp.pop("hparams_override", None) or {}
    flags_exp = dict(flags_exp)
    flags_exp.pop("hparams_override", None)
    experiment.update(file_exp)
    experiment.update(sweep["experiment-options"])
    experiment.update(flags_exp)
    experiment["workflow"] = workflow_name
    for key in ("component", "dataset", "batches", "seed"):
        if experiment.get(key) is None:
            raise DefinitionError(f"{source}: experiment-options.{key} is not set and workflow "
                                  f"{workflow_name!r} has no default for it")

    if not registry.is_registered("dataset", experiment["dataset"]):
        _lookup("dataset", experiment["dataset"], source)  # a dotted path must import

    # Component hparams: component defaults < workflow class < file < sweep < flags.
    layers = [(f"workflow {workflow_name!r} defaults", class_hparams),
              (source, file_hparams),
              (sweep_where, sweep["hparams"]),
              ("--hparams_override", flag_hparams)]
    component = component_options(experiment["component"], source)
    if component is None:
        hparams = {}
        for _, mapping in layers:
            hparams.update(copy.deepcopy(mapping))
    else:
        hparams = _merge_checked(component, layers, "hparams_override")
    experiment["hparams_override"] = hparams

    # Workflow options: workflow defaults < file < sweep < flags.
    workflow_options = _merge_checked(
        workflow_class.options,
        [(source, definition["workflow-options"]),
         (sweep_where, sweep["workflow-options"]),
         ("--workflow_options", flag_options)],
        "workflow-options")
    config = RunConfig(experiment=experiment, workflow_options=workflow_options,
                       workflow_class=workflow_class, source=source,
                       description=definition.get("description"))
    # Workflow hooks: derive data-dependent hparams, then check option values.
    for hook in ("complete_config", "check_options"):
        method = getattr(workflow_class, hook, None)
        if method is None:
            continue
        try:
            method(config)
        except ValueError as e:
            if isinstance(e, DefinitionError):
                raise
            raise DefinitionError(f"{source}: {e}") from None
    if component is not None:
        missing = [k for k, v in hparams.items() if v is None and component[k].default is REQUIRED]
        if missing:
            raise DefinitionError(f"{source}: hparams_override.{missing[0]} must be set "
                                  f"({component[missing[0]].help})")
    if check_component:
        _check_component(config, source)
    return config


def _check_component(config, source):
    """Constructs the component once (no weights) so invalid hparam values fail before a run."""
    try:
        config.component_class(**config.hparams)
    except (ValueError, TypeError, KeyError) as e:
        raise DefinitionError(f"{source}: component {config.experiment['component']!r} rejects "
                              f"its hparams: {e}") from None

