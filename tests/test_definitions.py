"""Definitions: parsing, validation (every bad case names file, key and accepted keys),
precedence (class defaults < file < sweep < flags), sweeps, and the registry."""
import json
import pathlib

import pytest
import yaml

from pagi_rsm import definitions
from pagi_rsm import registry
from pagi_rsm.definitions import DefinitionError

TOY = "tests.toy_workflow.ToyWorkflow"
REPO = pathlib.Path(__file__).resolve().parents[1]


def write(tmp_path, text, name="def.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def resolve_file(path, **kwargs):
    return definitions.resolve(definitions.load(path), source=path, **kwargs)


# --- valid definitions and precedence -----------------------------------------------------------

def test_class_defaults_only():
    [config] = definitions.resolve(workflow=TOY)
    assert config.batches == 20 and config.seed == 7            # ToyWorkflow's defaults
    assert config.hparams["units"] == 12                        # workflow's hparams_override
    assert config.hparams["symbols"] == 4                       # component's default_hparams
    assert config.workflow_options["checkpoint_interval"] == 5
    assert config.experiment["jit_compile"] == "auto"
    assert config.experiment["distribution"] == "default"
    assert config.trial is None


def test_precedence_flags_over_file_over_defaults(tmp_path):
    path = write(tmp_path, f"""
experiment-options:
  workflow: {TOY}
  batches: 30
  seed: 3
  hparams_override: {{units: 5, learning_rate: 0.1}}
workflow-options:
  time_steps: 6
  max_to_keep: 2
""")
    [config] = resolve_file(path, experiment_overrides={"seed": 9},
                            hparams_overrides={"units": 6},
                            workflow_option_overrides={"time_steps": 3})
    assert config.batches == 30                 # file over class default 20
    assert config.seed == 9                     # flag over file
    assert config.hparams["units"] == 6         # flag over file over workflow default
    assert config.hparams["learning_rate"] == 0.1
    assert config.hparams["batch_size"] == 8    # component default
    assert config.workflow_options["time_steps"] == 3
    assert config.workflow_options["max_to_keep"] == 2
    assert config.source == path


def test_base_is_laid_over_key_by_key(tmp_path):
    """A file with `base:` changes only the keys it sets, down to single hparams; a base may
    have its own base, and a description is inherited when the file has none."""
    (tmp_path / "sub").mkdir()
    write(tmp_path, f"""
description: the root
experiment-options:
  workflow: {TOY}
  batches: 30
  seed: 3
  hparams_override: {{units: 5, learning_rate: 0.1}}
workflow-options: {{time_steps: 6, max_to_keep: 2}}
parameter-sweeps:
  experiment-options: {{seed: [1, 2]}}
""", "root.yaml")
    write(tmp_path, """
base: ../root
experiment-options:
  hparams_override: {units: 7}
workflow-options: {time_steps: 4}
""", "sub/middle.yaml")
    leaf = write(tmp_path, """
description: the leaf
base: middle.yaml
experiment-options: {batches: 11}
parameter-sweeps:
  hparams: {learning_rate: [0.2]}
""", "sub/leaf.yaml")
    raw = definitions.load(leaf)
    assert "base" not in raw and raw["description"] == "the leaf"
    assert raw["experiment-options"] == {"workflow": TOY, "batches": 11, "seed": 3,
                                         "hparams_override": {"units": 7, "learning_rate": 0.1}}
    assert raw["workflow-options"] == {"time_steps": 4, "max_to_keep": 2}
    assert raw["parameter-sweeps"] == {"experiment-options": {"seed": [1, 2]},
                                       "hparams": {"learning_rate": [0.2]}}
    assert definitions.load(str(tmp_path / "sub/middle.yaml"))["description"] == "the root"
    configs = resolve_file(leaf)
    assert [c.seed for c in configs] == [1, 2]
    assert {(c.batches, c.hparams["units"], c.hparams["learning_rate"]) for c in configs} == \
        {(11, 7, 0.2)}


def test_base_names_a_shipped_definition(tmp_path):
    path = write(tmp_path, "base: video/rsm\nexperiment-options: {batches: 5, "
                           "hparams_override: {batch_size: 2}}\n")
    raw, shipped = definitions.load(path), definitions.load("video/rsm")
    assert raw["experiment-options"]["batches"] == 5
    hparams = dict(shipped["experiment-options"]["hparams_override"], batch_size=2)
    assert raw["experiment-options"]["hparams_override"] == hparams
    assert raw["workflow-options"] == shipped["workflow-options"]


@pytest.mark.parametrize("files, pattern", [
    ({"a.yaml": "base: absent\n"}, r"a\.yaml: base 'absent': definition file not found"),
    ({"a.yaml": "base: 3\n"}, r"a\.yaml: base must name a definition file .* got 3"),
    ({"a.yaml": "base: b\n", "b.yaml": "base: a.yaml\n"}, r"base 'a.yaml' makes a cycle: "
                                                             r".*a\.yaml -> .*b\.yaml -> .*a\.yaml"),
    ({"a.yaml": "base: a\n"}, r"base 'a' makes a cycle"),
    ({"a.yaml": "base: b\n", "b.yaml": "experiment-options: {batchez: 1}\n"},
     r"b\.yaml: unknown key 'batchez' in experiment-options"),
    ({"a.yaml": "base: b\nworkflow-options: [1]\n", "b.yaml": "{}\n"},
     r"a\.yaml: workflow-options must be a mapping"),
])
def test_bad_base_is_an_error_naming_the_file_and_key(tmp_path, files, pattern):
    for name, text in files.items():
        write(tmp_path, text, name)
    with pytest.raises(DefinitionError, match=pattern):
        definitions.load(str(tmp_path / "a.yaml"))


def test_base_outside_a_file_is_an_error():
    with pytest.raises(DefinitionError, match="base is read by definitions.load"):
        definitions.resolve({"base": "video/rsm"}, workflow=TOY)


def test_json_definition_equals_yaml(tmp_path):
    spec = {"experiment-options": {"workflow": TOY, "batches": 4,
                                   "hparams_override": {"units": 3}},
            "workflow-options": {"time_steps": 2}}
    from_json = resolve_file(write(tmp_path, json.dumps(spec), "d.json"))[0]
    from_yaml = resolve_file(write(tmp_path, yaml.safe_dump(spec), "d.yaml"))[0]
    assert from_json.as_definition() == from_yaml.as_definition()
    assert from_json.hparams["units"] == 3


def test_workflow_flag_overrides_file(tmp_path):
    path = write(tmp_path, "experiment-options: {workflow: grammar, batches: 3}\n")
    [config] = resolve_file(path, workflow=TOY)
    assert config.workflow_class.__name__ == "ToyWorkflow"


def test_yaml_exponent_string_is_accepted_as_float(tmp_path):
    # YAML 1.1 reads 5e-4 (no dot) as a string; a float hparam accepts it as the number.
    path = write(tmp_path, f"experiment-options: {{workflow: {TOY}, "
                           f"hparams_override: {{learning_rate: 5e-4}}}}\n")
    [config] = resolve_file(path)
    assert config.hparams["learning_rate"] == pytest.approx(5e-4)
    assert isinstance(config.hparams["learning_rate"], float)


def test_int_is_accepted_for_float_but_bool_is_not_a_number(tmp_path):
    [config] = definitions.resolve(workflow=TOY, hparams_overrides={"learning_rate": 1})
    assert config.hparams["learning_rate"] == 1.0
    with pytest.raises(DefinitionError, match=r"units must be an integer, got True"):
        definitions.resolve(workflow=TOY, hparams_overrides={"units": True})


def test_resolved_definition_round_trips(tmp_path):
    [config] = definitions.resolve(workflow=TOY, hparams_overrides={"units": 9},
                                   experiment_overrides={"batches": 11})
    path = write(tmp_path, config.to_yaml())
    [again] = resolve_file(path)
    assert again.as_definition() == config.as_definition()


def test_grammar_defaults_are_the_paper_values():
    [config] = definitions.resolve(workflow="grammar")
    hp = config.hparams
    assert (hp["batch_size"], hp["groups"], hp["cells_per_group"], hp["active_groups"],
            hp["inhibition_decay"], hp["predictor_hidden_size"]) == (
                400, [200], [6], [25], [0.98], [500])
    assert (hp["input_dim"], hp["num_classes"]) == (784, 7)   # derived: glyphs, 7 symbols
    options = config.workflow_options
    assert (options["stop_metric"], options["stop_target"], options["stop_window"],
            options["render"]) == ("test_state_accuracy", 0.995, 2000, "same")


def test_grammar_onehot_derives_input_dim():
    [config] = definitions.resolve(workflow="grammar",
                                   workflow_option_overrides={"render": "onehot"})
    assert config.hparams["input_dim"] == 7


def test_grammar_inconsistent_input_dim_is_an_error():
    with pytest.raises(DefinitionError, match=r"input_dim is 10 but the dataset"):
        definitions.resolve(workflow="grammar", hparams_overrides={"input_dim": 10})


# --- sweeps -------------------------------------------------------------------------------------

def test_sweep_grid_times_point_list(tmp_path):
    path = write(tmp_path, f"""
experiment-options: {{workflow: {TOY}, batches: 2}}
parameter-sweeps:
  hparams: {{units: [3, 5], learning_rate: [0.1, 0.2, 0.3]}}
  workflow-options: [{{time_steps: 2}}, {{time_steps: 3, max_to_keep: 1}}]
  experiment-options: {{seed: [1]}}
""")
    configs = resolve_file(path, hparams_overrides={"symbols": 3})
    assert len(configs) == 2 * 3 * 2 * 1
    assert [c.trial for c in configs] == [f"trial_{i:03d}" for i in range(12)]
    seen = {(c.hparams["units"], c.hparams["learning_rate"], c.workflow_options["time_steps"])
            for c in configs}
    assert len(seen) == 12
    assert all(c.hparams["symbols"] == 3 and c.seed == 1 for c in configs)
    last = configs[-1]
    assert last.trial_values == {"units": 5, "learning_rate": 0.3, "time_steps": 3,
                                 "max_to_keep": 1, "seed": 1}
    assert last.workflow_options["max_to_keep"] == 1
    assert configs[0].sweep_domains["units"] == [3, 5]
    assert configs[0].sweep_domains["learning_rate"] == [0.1, 0.2, 0.3]


def test_flags_override_swept_values():
    spec = {"experiment-options": {"workflow": TOY},
            "parameter-sweeps": {"hparams": {"units": [3, 5]}}}
    configs = definitions.resolve(spec, hparams_overrides={"units": 4})
    assert [c.hparams["units"] for c in configs] == [4, 4]


# --- every bad-definition case ------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.yaml")
    with pytest.raises(DefinitionError, match=r"definition file not found: .*absent.yaml"):
        definitions.load(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DefinitionError, match=r"must be a file"):
        definitions.load(str(tmp_path))


@pytest.mark.parametrize("text,name,pattern", [
    ("experiment-options: {batches: 3\n", "d.yaml", r"d.yaml: not valid YAML: .* line \d+"),
    ('{"experiment-options": {"batches": 3,}}', "d.json", r"d.json: not valid JSON: .*line 1"),
    ("experiment-options:\n  batches: 1\n  batches: 2\n", "d.yaml",
     r"d.yaml: not valid YAML: duplicate key 'batches'"),
    ('{"workflow-options": {}, "workflow-options": {}}', "d.json",
     r"duplicate key 'workflow-options'"),
    ("- just\n- a list\n", "d.yaml", r"d.yaml: a definition must be a mapping with the keys "
                                     r"base, description, experiment-options, parameter-sweeps, "
                                     r"workflow-options; got a list"),
])
def test_syntax_and_shape_errors(tmp_path, text, name, pattern):
    with pytest.raises(DefinitionError, match=pattern):
        definitions.load(write(tmp_path, text, name))


def test_unknown_top_level_key_names_file_key_and_accepted(tmp_path):
    path = write(tmp_path, "experiment_options: {batches: 3}\n")
    with pytest.raises(DefinitionError) as e:
        definitions.load(path)
    message = str(e.value)
    assert path in message and "'experiment_options'" in message
    assert "accepted keys: base, description, experiment-options, parameter-sweeps, " \
           "workflow-options" in message


def test_unknown_experiment_option(tmp_path):
    path = write(tmp_path, "experiment-options: {batchez: 3}\n")
    with pytest.raises(DefinitionError) as e:
        definitions.load(path)
    message = str(e.value)
    assert path in message and "'batchez'" in message and "experiment-options" in message
    for key in definitions.EXPERIMENT_OPTIONS:
        assert key in message


@pytest.mark.parametrize("line,pattern", [
    ("batches: ten", r"experiment-options.batches must be an integer >= 1, got 'ten'"),
    ("batches: 0", r"experiment-options.batches must be an integer >= 1, got 0"),
    ("batches: true", r"experiment-options.batches must be an integer >= 1, got True"),
    ("seed: -1", r"experiment-options.seed must be an integer in \[0, 2\*\*31\), got -1"),
    ("seed: 1.5", r"experiment-options.seed must be an integer"),
    ("workflow: 3", r"experiment-options.workflow must be a non-empty string"),
    ("hparams_override: [1, 2]", r"experiment-options.hparams_override must be a mapping"),
    ("jit_compile: maybe", r"experiment-options.jit_compile must be one of auto, true, false"),
    ("distribution: tpu", r"experiment-options.distribution must be one of default, mirrored, "
                          r"multi_worker"),
    ("deterministic: 1", r"experiment-options.deterministic must be true or false"),
    ("summary_dir: 5", r"experiment-options.summary_dir must be a directory path"),
])
def test_wrong_experiment_option_types(tmp_path, line, pattern):
    path = write(tmp_path, f"experiment-options:\n  {line}\n")
    with pytest.raises(DefinitionError, match=pattern) as e:
        definitions.load(path)
    assert path in str(e.value)


def test_section_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "workflow-options: [1, 2]\n")
    with pytest.raises(DefinitionError, match=r"workflow-options must be a mapping, got a list"):
        definitions.load(path)


def test_unknown_hparam_names_file_key_and_accepted(tmp_path):
    path = write(tmp_path, f"experiment-options:\n  workflow: {TOY}\n"
                           f"  hparams_override: {{unitz: 3}}\n")
    with pytest.raises(DefinitionError) as e:
        resolve_file(path)
    message = str(e.value)
    assert path in message and "'unitz'" in message and "hparams_override" in message
    assert "accepted keys: batch_size, learning_rate, nan_after, stateful, symbols, units" \
        in message


def test_wrong_hparam_type(tmp_path):
    path = write(tmp_path, f"experiment-options:\n  workflow: {TOY}\n"
                           f"  hparams_override: {{units: many}}\n")
    with pytest.raises(DefinitionError, match=r"hparams_override.units must be an integer, "
                                              r"got 'many'") as e:
        resolve_file(path)
    assert path in str(e.value)


def test_null_is_accepted_for_a_string_hparam_only():
    """A string hparam may be null ("off", e.g. the predictor's normalisation); a string
    workflow option may not."""
    [config] = definitions.resolve(workflow="grammar", hparams_overrides={"predictor_norm": None})
    assert config.hparams["predictor_norm"] is None
    with pytest.raises(DefinitionError, match=r"workflow-options.render must be a string"):
        definitions.resolve(definition={"experiment-options": {"workflow": "grammar"},
                                        "workflow-options": {"render": None}}, source="d")


def test_unknown_workflow_option(tmp_path):
    path = write(tmp_path, f"experiment-options: {{workflow: {TOY}}}\n"
                           f"workflow-options: {{time_stepz: 3}}\n")
    with pytest.raises(DefinitionError) as e:
        resolve_file(path)
    message = str(e.value)
    assert path in message and "'time_stepz'" in message and "workflow-options" in message
    assert "checkpoint_interval" in message and "time_steps" in message


def test_wrong_workflow_option_type(tmp_path):
    path = write(tmp_path, f"experiment-options: {{workflow: {TOY}}}\n"
                           f"workflow-options: {{progress: 'yes'}}\n")
    with pytest.raises(DefinitionError, match=r"workflow-options.progress must be a boolean"):
        resolve_file(path)


def test_out_of_range_workflow_option(tmp_path):
    path = write(tmp_path, f"experiment-options: {{workflow: {TOY}}}\n"
                           f"workflow-options: {{checkpoint_interval: -5}}\n")
    with pytest.raises(DefinitionError, match=r"def.yaml: workflow-options.checkpoint_interval "
                                              r"must be an integer >= 0, got -5"):
        resolve_file(path)


def test_grammar_probe_options_are_checked():
    with pytest.raises(DefinitionError, match=r"workflow-options.probe_test_chunks must be an "
                                              r"integer >= 1, got 0"):
        definitions.resolve(workflow="grammar",
                            workflow_option_overrides={"probe_test_chunks": 0})


def test_component_rejects_hparam_value():
    with pytest.raises(DefinitionError, match=r"rejects its hparams: units must be >= 1"):
        definitions.resolve(workflow=TOY, hparams_overrides={"units": 0})


def test_no_workflow_anywhere():
    with pytest.raises(DefinitionError, match=r"no workflow given; pass --workflow=NAME .*"
                                              r"registered workflows: .*grammar"):
        definitions.resolve({})


@pytest.mark.parametrize("kind,value,pattern", [
    ("workflow", "gramar", r"unknown workflow 'gramar'; registered workflows: .*grammar"),
    ("workflow", "no_such_module.Workflow", r"module 'no_such_module' not found"),
    ("workflow", "tests.toy_workflow.Nope", r"has no attribute 'Nope'"),
    ("workflow", "tests.toy_workflow.toy_dataset", r"is not a pagi_rsm Workflow"),
    ("component", "no_such_component", r"unknown component 'no_such_component'; registered "
                                       r"components: .*sequence_memory_stack"),
    ("dataset", "nodata", r"unknown dataset 'nodata'; registered datasets: .*grammar"),
])
def test_unknown_names(tmp_path, kind, value, pattern):
    spec = {"experiment-options": {"workflow": TOY, kind: value}}
    path = write(tmp_path, yaml.safe_dump(spec))
    with pytest.raises(DefinitionError, match=pattern) as e:
        resolve_file(path)
    assert path in str(e.value)


@pytest.mark.parametrize("sweep,pattern", [
    ("{hparamz: {units: [1]}}", r"unknown key 'hparamz' in parameter-sweeps; accepted keys: "
                                r"experiment-options, hparams, workflow-options"),
    ("{hparams: {units: 3}}", r"parameter-sweeps.hparams.units must be a non-empty list"),
    ("{hparams: {units: []}}", r"parameter-sweeps.hparams.units must be a non-empty list"),
    ("{hparams: [1, 2]}", r"parameter-sweeps.hparams must be a mapping of key: \[values\] or a "
                          r"non-empty list of mappings"),
    ("{experiment-options: {workflow: [a, b]}}", r"key 'workflow' cannot be swept; accepted keys"),
])
def test_bad_sweeps(tmp_path, sweep, pattern):
    path = write(tmp_path, f"experiment-options: {{workflow: {TOY}}}\n"
                           f"parameter-sweeps: {sweep}\n")
    with pytest.raises(DefinitionError, match=pattern):
        definitions.load(path)


def test_sweep_with_unknown_hparam(tmp_path):
    path = write(tmp_path, f"experiment-options: {{workflow: {TOY}}}\n"
                           f"parameter-sweeps: {{hparams: {{unitz: [1, 2]}}}}\n")
    with pytest.raises(DefinitionError, match=r"parameter-sweeps: unknown key 'unitz' in "
                                              r"hparams_override; accepted keys: batch_size"):
        resolve_file(path)


@pytest.mark.parametrize("text,pattern", [
    ("[1, 2]", r"--hparams_override must be a YAML/JSON mapping"),
    ("{units: 3", r"--hparams_override: not valid YAML"),
])
def test_bad_override_strings(text, pattern):
    with pytest.raises(DefinitionError, match=pattern):
        definitions.parse_override(text, "--hparams_override")


def test_override_strings_yaml_and_json():
    assert definitions.parse_override("{units: 3, lr: 0.5}", "--x") == {"units": 3, "lr": 0.5}
    assert definitions.parse_override('{"units": 3}', "--x") == {"units": 3}
    assert definitions.parse_override("", "--x") == {}


def test_yaml_is_never_evaluated(tmp_path):
    path = write(tmp_path, "experiment-options: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(DefinitionError, match=r"not valid YAML"):
        definitions.load(path)


# --- registry -----------------------------------------------------------------------------------

def test_registry_lookup_short_name_and_dotted_paths():
    from tests.toy_workflow import ToyWorkflow
    assert registry.lookup("workflow", TOY) is ToyWorkflow
    assert registry.lookup("workflow", "tests.toy_workflow:ToyWorkflow") is ToyWorkflow
    grammar = registry.lookup("workflow", "grammar")
    assert grammar.__name__ == "GrammarWorkflow"


def test_registry_describe_has_one_line_purposes():
    rows = registry.describe()
    kinds = {kind for kind, _, _ in rows}
    assert kinds == set(registry.KINDS)
    assert ("workflow", "grammar") in {(k, n) for k, n, _ in rows}
    assert all(purpose and "\n" not in purpose for _, _, purpose in rows)


def test_registry_rejects_bad_registrations():
    with pytest.raises(ValueError, match=r"kind must be one of workflow, component, dataset"):
        registry.register("model", "x", "a:b", "p")
    with pytest.raises(ValueError, match=r"already registered"):
        registry.register("workflow", "grammar", "other.module:Class", "p")
    with pytest.raises(ValueError, match=r"target must look like"):
        registry.register("workflow", "y", "no_colon", "p")


# --- every shipped definition resolves ------------------------------------------------------------

SHIPPED = sorted(str(p.relative_to(REPO)) for p in (REPO / "definitions").rglob("*")
                 if p.suffix in (".yaml", ".yml", ".json"))


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_definition_resolves(path, monkeypatch):
    monkeypatch.chdir(REPO)
    configs = resolve_file(path)
    assert configs and all(c.batches >= 1 for c in configs)


def test_embedded_reber_definition_has_the_paper_values(monkeypatch):
    monkeypatch.chdir(REPO)
    path = "definitions/grammar/embedded_reber.yaml"
    if not (REPO / path).exists():
        pytest.skip(f"{path} not written yet")
    [config] = resolve_file(path)
    hp = config.hparams
    assert (hp["batch_size"], hp["groups"], hp["cells_per_group"], hp["active_groups"],
            hp["inhibition_decay"], hp["predictor_hidden_size"]) == (400, 200, 6, 25, 0.98, [500])
    assert config.workflow_class.__name__ == "GrammarWorkflow"
