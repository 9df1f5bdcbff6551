"""Workflow base class: training, checkpoints and resume (after SIGKILL), NaN stop, early stop at
a target, determinism, MirroredStrategy == one device, summaries. Uses the tiny toy workflow of
tests/toy_workflow.py; the grammar workflow with the real RSM stack is covered by slow tests."""
import json
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import definitions
from pagi_rsm.workflows.workflow import format_summary
from tests.toy_workflow import TOY, ToyStream, run_pagi
from tests.toy_workflow import restore_op_determinism  # noqa: F401 (autouse)


def toy_config(tmp_path, name="run", hparams=None, options=None, **experiment):
    experiment.setdefault("summary_dir", str(tmp_path / name))
    [config] = definitions.resolve(workflow=TOY, experiment_overrides=experiment,
                                   hparams_overrides=hparams or {},
                                   workflow_option_overrides=options or {})
    return config


def run_toy(tmp_path, name="run", **kwargs):
    config = toy_config(tmp_path, name, **kwargs)
    workflow = config.workflow_class(config)
    return workflow, workflow.run()


def test_run_writes_results_checkpoints_and_definition(tmp_path):
    workflow, results = run_toy(tmp_path, batches=12)
    summary = tmp_path / "run"
    assert results["status"] == "completed" and results["batches"] == 12
    on_disk = json.loads((summary / "results.json").read_text())
    assert on_disk["headline"]["metric"] == "accuracy"
    assert on_disk["headline"]["value"] == pytest.approx(results["metrics"]["accuracy"])
    assert set(on_disk["metrics"]) == {"loss", "accuracy"}
    assert on_disk["versions"]["tensorflow"] == tf.__version__
    assert on_disk["options"]["experiment-options"]["batches"] == 12
    assert on_disk["wall_time_s"] > 0
    # checkpoints every 5 batches and at the end; max_to_keep 3
    ckpts = sorted(p.name for p in (summary / "checkpoints").glob("ckpt-*.index"))
    assert ckpts == ["ckpt-10.index", "ckpt-12.index", "ckpt-5.index"]
    assert results["last_checkpoint"].endswith("ckpt-12")
    written = definitions.load(str(summary / "definition.yaml"))
    assert written["experiment-options"]["hparams_override"]["units"] == 12
    assert "status      completed" in format_summary(results)


def test_stream_state_and_optimizer_state_are_checkpointed(tmp_path):
    workflow, _ = run_toy(tmp_path, batches=5)
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints" / "ckpt-5"))
    names = reader.get_variable_to_shape_map()
    assert any("state" in n and n.startswith("weights/") for n in names)  # stream state
    assert any("optimizer" in n and "iterations" in n or "iteration" in n for n in names)
    assert reader.get_tensor("run_state/batch/.ATTRIBUTES/VARIABLE_VALUE") == 5


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 18-batch toy run (seed 7), shared by the resume tests."""
    _, results = run_toy(tmp_path_factory.mktemp("reference"), batches=18)
    return results


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, reference):
    # A `pagi run` subprocess killed with SIGKILL at batch 13 (last checkpoint: batch 10).
    killed = run_pagi("run", f"--workflow={TOY}", "--batches=18",
                      f"--summary_dir={tmp_path / 'cut'}", "--workflow_options={kill_at_batch: 13}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "cut" / "results.json").exists()
    # Resumed in this process through the CLI (the summary directory comes from run.json).
    from pagi_rsm import cli
    assert cli.main(["pagi", "run", f"--workflow={TOY}", "--batches=18",
                     f"--checkpoint={tmp_path / 'cut' / 'checkpoints'}"]) == 0
    result = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert result["resumed_from"] == 10 and result["batches"] == 18
    assert result["metrics"] == reference["metrics"]   # bit-identical (same seed, determinism)
    assert reference["metrics"]["loss"] is not None


def test_sigterm_saves_the_batch_and_resumes_from_it(tmp_path, reference):
    # SIGTERM at batch 13 (checkpoints every 5): the run stops after that batch, saves ckpt-13,
    # skips evaluation, reports "interrupted" and exits 5; the same command resumes at 13 and
    # ends exactly as the uninterrupted run.
    stopped = run_pagi("run", f"--workflow={TOY}", "--batches=18",
                       f"--summary_dir={tmp_path / 'cut'}",
                       "--workflow_options={kill_at_batch: 13, kill_signal: SIGTERM}")
    assert stopped.returncode == 5, stopped.stderr
    result = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert result["status"] == "interrupted" and result["batches"] == 13
    assert result["message"].startswith("stopped by SIGTERM after batch 13")
    assert result["last_checkpoint"].endswith("ckpt-13") and result["evaluation"] == {}
    from pagi_rsm import cli
    assert cli.main(["pagi", "run", f"--workflow={TOY}", "--batches=18",
                     f"--checkpoint={tmp_path / 'cut' / 'checkpoints'}"]) == 0
    result = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert result["resumed_from"] == 13 and result["status"] == "completed"
    assert result["metrics"] == reference["metrics"]


@pytest.fixture
def sigint_default():
    """SIGINT as in an interactive Python (KeyboardInterrupt), whatever the test runner's is
    (a job started with `&` from a script ignores it); restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_sigint_stops_cleanly_and_a_second_one_at_once(tmp_path, sigint_default):
    config = toy_config(tmp_path, batches=20, options={"kill_at_batch": 7,
                                                       "kill_signal": "SIGINT"})
    workflow = config.workflow_class(config)
    results = workflow.run()
    assert results["status"] == "interrupted" and results["batches"] == 7
    assert results["last_checkpoint"].endswith("ckpt-7")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored

    from pagi_rsm.callbacks.run_clock import RunClock
    from pagi_rsm.callbacks.stop_on_signal import StopOnSignal
    with pytest.raises(KeyboardInterrupt):
        with StopOnSignal(RunClock(start=0, limit=10)) as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.received == "SIGINT"
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored():
    from pagi_rsm.callbacks.run_clock import RunClock
    from pagi_rsm.callbacks.stop_on_signal import StopOnSignal
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSignal(RunClock(start=0, limit=10)) as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            assert stop.received is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_resume_off_grid_and_without_restore(tmp_path, reference):
    # A run that ended at batch 12 (checkpoints every 5: its last one is off the epoch grid),
    # extended to 18: the first fit finishes the epoch 12..15, then it continues on the grid.
    run_toy(tmp_path, "a", batches=12)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    _, extended = run_toy(tmp_path, "a", batches=18)
    assert extended["resumed_from"] == 12 and extended["batches"] == 18
    assert extended["metrics"] == reference["metrics"]
    # The check can fail: restoring into a throwaway model (so the resumed run starts from a
    # fresh model and fresh streams) gives other metrics.
    config = toy_config(tmp_path, "b", batches=18)
    workflow = config.workflow_class(config)
    restore = workflow.restore
    workflow.restore = lambda model: restore(ToyStream(**config.hparams))
    fresh = workflow.run()
    assert fresh["resumed_from"] == 12 and fresh["batches"] == 18
    assert fresh["metrics"] != reference["metrics"]


def test_resume_with_other_hparams_is_refused(tmp_path, capsys):
    from pagi_rsm import cli
    from pagi_rsm.workflows.workflow import ResumeError
    run_toy(tmp_path, batches=5)
    config = toy_config(tmp_path, batches=10, hparams={"units": 7})
    with pytest.raises(ResumeError, match=r"other component settings \(hparams_override.units: "
                                          r"12 -> 7\)"):
        config.workflow_class(config).run()
    status = cli.main(["pagi", "run", f"--workflow={TOY}", "--batches=10",
                       "--hparams_override={units: 7}",
                       f"--checkpoint={tmp_path / 'run' / 'checkpoints'}"])
    assert status == 2
    assert "pagi: error: the checkpoints in" in capsys.readouterr().err


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    _, a = run_toy(tmp_path, "a", batches=3, seed=3)
    _, b = run_toy(tmp_path, "b", batches=3, seed=3)
    _, c = run_toy(tmp_path, "c", batches=3, seed=4)
    assert a["metrics"] == b["metrics"]
    assert a["metrics"] != c["metrics"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    # The loss is NaN from optimizer step 7 on, i.e. at batch 8; checkpoints every 5.
    workflow, results = run_toy(tmp_path, batches=20, hparams={"nan_after": 7})
    assert results["status"] == "nan"
    assert results["nan_loss"] == "loss"
    assert "loss 'loss' became nan at batch 8" in results["message"]
    assert results["batches"] == 8
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.index"))
    assert ckpts == ["ckpt-5.index"]
    assert results["last_checkpoint"].endswith("ckpt-5")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "nan"


def test_stop_at_target_held_over_window(tmp_path):
    options = {"stop_metric": "accuracy", "stop_target": 0.8, "stop_window": 3,
               "checkpoint_interval": 10}
    _, results = run_toy(tmp_path, batches=300, options=options,
                         hparams={"learning_rate": 0.1})
    assert results["status"] == "target_reached", results["message"]
    assert results["batches"] < 300
    assert results["metrics"]["accuracy"] >= 0.8
    assert results["headline"]["target"]["value"] == 0.8
    # the final checkpoint is the batch where it stopped
    assert results["last_checkpoint"].endswith(f"ckpt-{results['batches']}")


def test_stop_at_target_window_metric_must_be_full(tmp_path):
    from pagi_rsm.callbacks.stop_at_target import StopAtTarget

    class Model:
        stop_training = False
    stop = StopAtTarget("acc", 0.99, window=2000, window_metric="count")
    stop.set_model(Model())
    stop.on_train_batch_end(0, {"acc": 1.0, "count": 1999.0})
    assert not stop.reached
    stop.on_train_batch_end(1, {"acc": 0.98, "count": 2000.0})
    assert not stop.reached
    stop.on_train_batch_end(2, {"acc": 0.995, "count": 2000.0})
    assert stop.reached and stop.batch == 3 and stop.model.stop_training


def test_mirrored_equals_one_device(tmp_path):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    hparams = {"stateful": False}
    w1, one = run_toy(tmp_path, "one", batches=6, hparams=hparams)
    w2, two = run_toy(tmp_path, "two", batches=6, hparams=hparams, distribution="mirrored")
    assert w1.strategy.num_replicas_in_sync == 1
    assert w2.strategy.num_replicas_in_sync == 2
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(two["metrics"][key], one["metrics"][key], rtol=1e-5,
                                   atol=1e-6)
    a = tf.train.load_checkpoint(one["last_checkpoint"])
    b = tf.train.load_checkpoint(two["last_checkpoint"])
    for name in a.get_variable_to_shape_map():
        if name.startswith("model/") and "w_" in name and "OPTIMIZER" not in name:
            np.testing.assert_allclose(b.get_tensor(name), a.get_tensor(name), rtol=1e-5,
                                       atol=1e-6, err_msg=name)


def test_summaries_have_scalars_images_histograms_text_hparams(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as ea
    run_toy(tmp_path, batches=5)
    acc = ea.EventAccumulator(str(tmp_path / "run"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    plugin = {tag: acc.SummaryMetadata(tag).plugin_data.plugin_name
              for tag in acc.Tags()["tensors"]}
    assert plugin["train/loss"] == "scalars" and plugin["train/accuracy"] == "scalars"
    assert [e.step for e in acc.Tensors("train/loss")] == [1, 2, 3, 4, 5]
    assert plugin["activity/state"] in ("images", "histograms")
    assert any(t.startswith("weights/") and p == "histograms" for t, p in plugin.items())
    assert plugin["definition"] == "text"
    assert "hparams" in plugin.values()
    text = acc.Tensors("definition")[0].tensor_proto.string_val[0].decode()
    assert "units: 12" in text


def test_jit_compile_flag_reaches_the_model(tmp_path):
    from pagi_rsm import runtime
    assert runtime.resolve_jit_compile("auto") is runtime.has_accelerator()   # GPU/TPU only
    assert runtime.resolve_jit_compile("false") is False
    xla, results = run_toy(tmp_path, "xla", batches=1, jit_compile="true", deterministic=False)
    assert xla.jit_compile is True and results["jit_compile"] is True
    assert results["status"] == "completed" and results["metrics"]["loss"] is not None
    # Keras compiles without XLA under op determinism; the run says so and records it.
    det, results = run_toy(tmp_path, "det", batches=1, jit_compile="true")
    assert det.jit_compile is False and results["jit_compile"] is False


def test_evaluate_batches(tmp_path):
    _, results = run_toy(tmp_path, batches=5, options={"evaluate_batches": 2})
    assert set(results["evaluation"]) == {"accuracy"}


GRAMMAR_TINY = {"batch_size": 8, "groups": [12], "cells_per_group": [3], "active_groups": [2],
                "predictor_hidden_size": [16]}


@pytest.mark.slow
def test_grammar_workflow_runs_and_resumes_exactly(tmp_path):
    """The real stack on the real grammar stream: a run resumed at batch 2 of 4 ends with the
    metrics of the uninterrupted run (stream state, optimisers and data offset restored)."""
    def grammar(name, batches):
        [config] = definitions.resolve(
            workflow="grammar", hparams_overrides=GRAMMAR_TINY,
            experiment_overrides={"batches": batches, "summary_dir": str(tmp_path / name)},
            workflow_option_overrides={"checkpoint_interval": 2, "image_interval": 2,
                                       "chunk_length": 6, "probe_interval": 2,
                                       "probe_streams": 4, "probe_train_chunks": 3,
                                       "probe_test_chunks": 2})
        return config.workflow_class(config).run()
    full = grammar("full", 4)
    grammar("cut", 2)
    resumed = grammar("cut", 4)
    assert full["status"] == "completed" and resumed["resumed_from"] == 2
    assert resumed["metrics"] == full["metrics"]
    assert {"test_state_accuracy", "test_state_count", "memory_loss_0", "predictor_loss"} <= set(
        full["metrics"])
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(tmp_path / "full"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    plugin = {t: acc.SummaryMetadata(t).plugin_data.plugin_name for t in acc.Tags()["tensors"]}
    assert plugin["train/test_state_accuracy"] == "scalars"
    assert plugin["probe/test_state_accuracy"] == plugin["probe/accuracy"] == "scalars"
    assert [e.step for e in acc.Tensors("probe/accuracy")] == [2, 4]
    assert "images" in plugin.values() and "histograms" in plugin.values()


@pytest.mark.slow
def test_grammar_workflow_mirrored_equals_one_device(tmp_path):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    metrics = {}
    for distribution in ("default", "mirrored"):
        [config] = definitions.resolve(
            workflow="grammar", hparams_overrides=GRAMMAR_TINY,
            experiment_overrides={"batches": 3, "distribution": distribution,
                                  "summary_dir": str(tmp_path / distribution)},
            workflow_option_overrides={"chunk_length": 6, "image_interval": 3,
                                       "probe_interval": 3, "probe_streams": 4,
                                       "probe_train_chunks": 3, "probe_test_chunks": 2})
        metrics[distribution] = config.workflow_class(config).run()["metrics"]
    for key, value in metrics["default"].items():
        # float32 sums over replicas are ordered differently: a tolerance, not bit equality
        np.testing.assert_allclose(metrics["mirrored"][key], value, rtol=1e-3, atol=1e-4,
                                   err_msg=key)


@pytest.mark.slow
def test_multi_worker_single_worker_cluster(tmp_path):
    """--distribution=multi_worker builds MultiWorkerMirroredStrategy from TF_CONFIG (a
    one-worker cluster on the loopback interface)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}"]},
                 "task": {"type": "worker", "index": 0}}
    done = run_pagi("run", f"--workflow={TOY}", "--batches=4", "--distribution=multi_worker",
                    f"--summary_dir={tmp_path / 'mw'}", env={"TF_CONFIG": json.dumps(tf_config)})
    assert done.returncode == 0, done.stderr
    assert "MultiWorkerMirroredStrategy" in done.stderr
    results = json.loads((tmp_path / "mw" / "results.json").read_text())
    assert results["status"] == "completed" and results["batches"] == 4


# --- the run's callbacks on their own --------------------------------------------------------------

class _FakeModel:
    stop_training = False


def test_run_clock_counts_across_fits_and_stops_at_limit():
    from pagi_rsm.callbacks.run_clock import RunClock
    with pytest.raises(ValueError, match=r"start must be an integer >= 0, got -1"):
        RunClock(start=-1)
    clock = RunClock(start=3, limit=5)
    clock.set_model(_FakeModel())
    clock.on_train_batch_end(0, {"loss": 1.0})
    assert clock.batch == 4 and not clock.model.stop_training
    clock.on_train_batch_end(0, {"loss": 0.5})
    assert clock.batch == 5 and clock.done and clock.model.stop_training
    assert clock.logs == {"loss": 0.5}


def test_nan_guard_checks_losses_only():
    from pagi_rsm.callbacks.nan_guard import NaNGuard
    guard = NaNGuard()
    guard.set_model(_FakeModel())
    guard.on_train_batch_end(0, {"accuracy": float("nan"), "loss": 1.0})
    assert not guard.tripped
    guard.on_train_batch_end(1, {"memory_loss_1": float("inf"), "loss": 1.0})
    assert guard.tripped and guard.loss_name == "memory_loss_1" and guard.batch == 2
    assert guard.model.stop_training


def test_progress_line_shows_headline_and_loss():
    import io
    from pagi_rsm.callbacks.progress import HeadlineProgress
    from pagi_rsm.callbacks.run_clock import RunClock
    clock, out = RunClock(start=0, limit=4), io.StringIO()
    progress = HeadlineProgress(clock, 4, "test_state_accuracy", stream=out, log_every=0.0)
    for _ in range(4):
        clock.batch += 1
        progress.on_train_batch_end(0, {"test_state_accuracy": 0.75, "loss": 1.5, "x": 2.0})
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("batch 4/4 [####################] 100%")
    assert "test_state_accuracy 0.7500" in lines[-1] and "loss 1.5000" in lines[-1]
    assert "x 2" not in lines[-1]


def _scalar_series(directory):
    """{tag: [(step, value), ...]} of every train* scalar in `directory`'s event files."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(directory), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"] if tag.startswith("train")}, acc


def test_scalars_do_not_depend_on_the_checkpoint_interval(tmp_path):
    # Per-batch values and a 3-batch window: the same series whatever the epoch length (a
    # Keras epoch is a checkpoint interval), and a run resumed at batch 6 continues them.
    options = {"summary_window": 3}
    run_toy(tmp_path, "two", batches=10, options={**options, "checkpoint_interval": 2})
    run_toy(tmp_path, "five", batches=10, options={**options, "checkpoint_interval": 5})
    run_toy(tmp_path, "cut", batches=6, options={**options, "checkpoint_interval": 2})
    run_toy(tmp_path, "cut", batches=10, options={**options, "checkpoint_interval": 2})
    two, acc = _scalar_series(tmp_path / "two")
    five, _ = _scalar_series(tmp_path / "five")
    cut, _ = _scalar_series(tmp_path / "cut")
    assert set(two) == {"train/loss", "train/accuracy", "train_window/loss",
                        "train_window/accuracy"}
    assert two == five and two == cut
    loss = [v for _, v in two["train/loss"]]
    window = [v for _, v in two["train_window/loss"]]
    assert [s for s, _ in two["train/loss"]] == list(range(1, 11))
    # The window is the mean of the last 3 per-batch values (float32 in the event file).
    np.testing.assert_allclose(window, [np.mean(loss[max(i - 2, 0):i + 1]) for i in range(10)],
                               rtol=1e-6)
    assert len(set(loss)) == 10   # per-batch values, not a running mean that repeats
    assert "last 3 training batches" in acc.SummaryMetadata("train_window/loss").summary_description
    assert "batch alone" in acc.SummaryMetadata("train/loss").summary_description


def test_any_callback_stop_ends_the_run(tmp_path):
    # A plain Keras callback that sets model.stop_training at batch 7 (checkpoints every 5): the
    # run ends there with status target_reached; the loop does not call fit again.
    import keras

    class StopAt7(keras.callbacks.Callback):
        def __init__(self, clock):
            super().__init__()
            self.clock = clock

        def on_train_batch_end(self, batch, logs=None):
            if self.clock.batch == 7:
                self.model.stop_training = True

    config = toy_config(tmp_path, batches=20)
    workflow = config.workflow_class(config)
    workflow.extra_callbacks = lambda: [StopAt7(workflow.clock)]
    results = workflow.run()
    assert results["status"] == "target_reached" and results["batches"] == 7
    assert results["message"] == "a callback stopped training at batch 7"
    assert results["last_checkpoint"].endswith("ckpt-7")
    assert (tmp_path / "run" / "model.keras").exists()
