"""The `pagi` command end to end: definition -> run -> TensorBoard events -> results.json; bad
definitions (exit 2, one error line, nothing started); list / show / help; sweeps."""
import json

import pytest
import yaml

from pagi_rsm import cli
from tests.toy_workflow import TOY, run_pagi
from tests.toy_workflow import restore_op_determinism  # noqa: F401 (autouse)


def pagi(*args):
    """Runs the CLI in this process; returns the exit status."""
    return cli.main(["pagi", *args])


def write(tmp_path, spec, name="def.yaml"):
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return str(path)


def event_plugins(logdir):
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    return acc, {tag: acc.SummaryMetadata(tag).plugin_data.plugin_name
                 for tag in acc.Tags()["tensors"]}


def test_end_to_end_definition_run_events_results(tmp_path):
    summary = tmp_path / "summaries"
    path = write(tmp_path, {
        "description": "toy end-to-end",
        "experiment-options": {"workflow": TOY, "batches": 6, "seed": 5,
                               "hparams_override": {"units": 10}},
        "workflow-options": {"checkpoint_interval": 3, "image_interval": 3, "progress": True}})
    done = run_pagi("run", f"--definition={path}", f"--summary_dir={summary}",
                    "--hparams_override={learning_rate: 0.02}")
    assert done.returncode == 0, done.stderr
    assert "batch 6/6" in done.stdout                       # progress line
    assert "status      completed: trained 6 batches" in done.stdout   # final summary
    assert "Traceback" not in done.stderr
    acc, plugin = event_plugins(summary)
    assert plugin["train/loss"] == "scalars" and plugin["train/accuracy"] == "scalars"
    assert [e.step for e in acc.Tensors("train/accuracy")] == list(range(1, 7))
    assert plugin["activity/state"] == "images"              # the component's hook
    assert plugin["weights/toy_stream/w_rec"] == "histograms"
    assert plugin["definition"] == "text"
    assert plugin["_hparams_/session_start_info"] == "hparams"
    text = acc.Tensors("definition")[0].tensor_proto.string_val[0].decode()
    assert "learning_rate: 0.02" in text and "units: 10" in text
    results = json.loads((summary / "results.json").read_text())
    assert results["status"] == "completed" and results["batches"] == 6
    assert results["headline"]["metric"] == "accuracy"
    assert results["headline"]["value"] == results["metrics"]["accuracy"]
    assert results["options"]["experiment-options"]["hparams_override"]["learning_rate"] == 0.02
    assert results["options"]["description"] == "toy end-to-end"
    assert results["source"] == path
    assert sorted(p.name for p in (summary / "checkpoints").glob("*.index")) == [
        "ckpt-3.index", "ckpt-6.index"]


BAD = [
    # (definition text or None, extra args, expected message fragments, message names the file)
    (None, ["--definition=/nonexistent/x.yaml"], ["definition file not found",
                                                   "/nonexistent/x.yaml"], False),
    ("experiment-options: {batches: 3\n", [], ["not valid YAML", "line"], True),
    ("experiment-options: {batchez: 3}\n", [], ["unknown key 'batchez' in experiment-options",
                                                "accepted keys: batches"], True),
    ("experiment-options: {batches: three}\n", [], ["experiment-options.batches must be an "
                                                    "integer >= 1, got 'three'"], True),
    ("experiment_options: {}\n", [], ["unknown top-level key 'experiment_options'",
                                      "accepted keys: base, description, experiment-options"], True),
    (f"experiment-options: {{workflow: {TOY}, hparams_override: {{unitz: 2}}}}\n", [],
     ["unknown key 'unitz' in hparams_override", "accepted keys: batch_size"], True),
    (f"experiment-options: {{workflow: {TOY}}}\nworkflow-options: {{kill: 1}}\n", [],
     ["unknown key 'kill' in workflow-options", "accepted keys: checkpoint_interval"], True),
    ("experiment-options: {workflow: nosuchflow}\n", [], ["unknown workflow 'nosuchflow'",
                                                          "registered workflows: ", "grammar"],
     True),
    (f"experiment-options: {{workflow: {TOY}}}\n", ["--hparams_override=[1, 2]"],
     ["--hparams_override must be a YAML/JSON mapping"], False),
    (f"experiment-options: {{workflow: {TOY}}}\n", ["--hparams_override={units: -3}"],
     ["rejects its hparams: units must be >= 1"], True),
    (f"experiment-options: {{workflow: {TOY}}}\n", ["--batches=0"], ["--batches"], False),
    (f"experiment-options: {{workflow: {TOY}}}\n", ["--batchs=3"],
     ["Unknown command line flag 'batchs'", "Did you mean: batches"], False),
    (f"experiment-options: {{workflow: {TOY}}}\n", ["--distribution=gpu"], ["--distribution"],
     False),
]


@pytest.mark.parametrize("text,args,fragments,names_file", BAD)
def test_bad_definitions_exit_2_with_one_error_and_start_nothing(tmp_path, capsys, text, args,
                                                                 fragments, names_file):
    summary = tmp_path / "never"
    definition = [f"--definition={write(tmp_path, text)}"] if text is not None else []
    status = pagi("run", *definition, *args, f"--summary_dir={summary}")
    out, err = capsys.readouterr()
    assert status == 2
    assert err.startswith("pagi: error: ")
    for fragment in fragments:
        assert fragment in err
    if names_file:
        assert str(tmp_path / "def.yaml") in err
    assert "Traceback" not in err
    assert not summary.exists()                               # nothing started


def test_bad_definition_in_a_real_process_prints_no_traceback(tmp_path):
    path = write(tmp_path, f"experiment-options: {{workflow: {TOY}, seed: [1]}}\n")
    done = run_pagi("run", f"--definition={path}", f"--summary_dir={tmp_path / 'never'}")
    assert done.returncode == 2
    assert f"pagi: error: {path}: experiment-options.seed must be an integer" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "never").exists()


def test_unknown_command_and_no_command(capsys):
    assert pagi("train") == 2
    assert "unknown command 'train'; commands: run, show, list" in capsys.readouterr().err
    assert pagi() == 2
    assert "Usage:" in capsys.readouterr().err


def test_help_is_readable(capsys):
    assert pagi("--help") == 0
    out = capsys.readouterr().out
    assert "pagi run --workflow=grammar" in out and "tensorboard --logdir" in out
    assert pagi("run", "--help") == 0
    out = capsys.readouterr().out
    for flag in ("--workflow", "--definition", "--hparams_override", "--workflow_options",
                 "--batches", "--seed", "--summary_dir", "--checkpoint",
                 "--jit_compile=auto|true|false", "--distribution=default|mirrored|multi_worker"):
        assert flag in out
    assert "Exit status" in out and "<auto|true|false>:" not in out
    assert pagi("show", "-h") == 0 and "pagi show" in capsys.readouterr().out


def test_list_shows_workflows_components_datasets(capsys):
    assert pagi("list") == 0
    out = capsys.readouterr().out
    assert "Workflows" in out and "Components" in out and "Datasets" in out
    assert "  grammar " in out and "sequence_memory_stack" in out
    assert "Embedded Reber" in out


def test_show_prints_resolved_options_as_a_valid_definition(tmp_path, capsys):
    path = write(tmp_path, {"experiment-options": {"workflow": TOY, "batches": 9},
                            "workflow-options": {"time_steps": 2}})
    assert pagi("show", f"--definition={path}", "--seed=11",
                "--workflow_options={max_to_keep: 1}") == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["experiment-options"]["batches"] == 9
    assert shown["experiment-options"]["seed"] == 11
    assert shown["experiment-options"]["hparams_override"]["units"] == 12
    assert shown["workflow-options"]["time_steps"] == 2
    assert shown["workflow-options"]["max_to_keep"] == 1
    assert not any(tmp_path.glob("runs*"))


def test_show_grammar_with_no_definition(capsys):
    assert pagi("show", "--workflow=grammar") == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    hp = shown["experiment-options"]["hparams_override"]
    assert (hp["groups"], hp["cells_per_group"], hp["active_groups"], hp["batch_size"]) == (
        [200], [6], [25], 400)


def test_sweep_runs_each_combination_with_hparams(tmp_path, capsys):
    summary = tmp_path / "sweep"
    path = write(tmp_path, {
        "experiment-options": {"workflow": TOY, "batches": 2},
        "workflow-options": {"checkpoint_interval": 2},
        "parameter-sweeps": {"hparams": {"units": [4, 6]},
                             "workflow-options": [{"time_steps": 2, "max_to_keep": 1}],
                             "experiment-options": {"seed": [1]}}})
    assert pagi("run", f"--definition={path}", f"--summary_dir={summary}") == 0
    trials = sorted(p.name for p in summary.iterdir() if p.is_dir())
    assert trials == ["checkpoints", "trial_000", "trial_001"]
    values = []
    for trial in trials[1:]:
        results = json.loads((summary / trial / "results.json").read_text())
        assert results["status"] == "completed" and results["trial"] == trial
        values.append((results["trial_values"]["units"], results["trial_values"]["seed"]))
        options = results["options"]["experiment-options"]
        assert (options["hparams_override"]["units"], options["seed"]) == values[-1]
        assert results["options"]["workflow-options"]["time_steps"] == 2
        assert (summary / "checkpoints" / trial / "checkpoint").exists()
        _, plugin = event_plugins(summary / trial)
        assert plugin["_hparams_/session_start_info"] == "hparams"
        assert plugin["train/accuracy"] == "scalars"
    assert sorted(values) == [(4, 1), (6, 1)]
    _, plugin = event_plugins(summary)                      # HParams dashboard configuration
    assert plugin["_hparams_/experiment"] == "hparams"
    sweep = json.loads((summary / "sweep.json").read_text())
    assert [t["trial"] for t in sweep] == trials[1:]


def test_nan_exits_3(tmp_path, capsys):
    status = pagi("run", f"--workflow={TOY}", "--batches=6", "--hparams_override={nan_after: 2}",
                  f"--summary_dir={tmp_path / 'nan'}")
    assert status == 3
    results = json.loads((tmp_path / "nan" / "results.json").read_text())
    assert results["status"] == "nan" and results["nan_loss"] == "loss"


def test_truncated_mnist_file_is_one_error_line_exit_2_and_no_run_directory(tmp_path, capsys):
    """A data problem is found before the run starts: one line naming the file, status 2."""
    import gzip
    data = tmp_path / "mnist"
    data.mkdir()
    header = (2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(data / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(784 * 3))                     # 3 of the 10 images it announces
    with gzip.open(data / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write((2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(10))
    run_dir = tmp_path / "run"
    status = cli.main(["pagi", "run", "--workflow=grammar", f"--summary_dir={run_dir}",
                       f"--workflow_options={{render: random, mnist_dir: {data}}}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "train-images-idx3-ubyte" in err[0] and "truncated" in err[0]
    assert not run_dir.exists()


def test_empty_mnist_directory_says_where_to_put_the_files(tmp_path, capsys):
    run_dir = tmp_path / "run"
    status = cli.main(["pagi", "run", "--workflow=grammar", f"--summary_dir={run_dir}",
                       f"--workflow_options={{render: random, mnist_dir: {tmp_path}}}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "PAGI_RSM_MNIST_DIR" in err[0]
    assert not run_dir.exists()


def test_shipped_definition_by_name_and_listed(capsys):
    assert cli.main(["pagi", "show", "--definition=grammar/embedded_reber"]) == 0
    assert "active_groups: 25" in capsys.readouterr().out
    assert cli.main(["pagi", "list"]) == 0
    out = capsys.readouterr().out
    assert "grammar/embedded_reber " in out and "fast_weights/table1" in out


def test_run_help_lists_the_workflow_options_and_hparams(capsys):
    assert cli.main(["pagi", "run", "--workflow=grammar", "--help"]) == 0
    out = capsys.readouterr().out
    assert "probe_interval: an integer >= 0 (default: 250)" in out
    assert "active_groups: an integer >= 1, or a list of one per layer" in out
