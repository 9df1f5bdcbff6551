"""The video workflow: bouncing balls, a convolutional RSM stack and the GAN rectifier.

Three phases, as the original ran them (docs/video.md), chosen by ``workflow-options.phase``:

1. ``rsm``: trains the memory (a two-layer convolutional `SequenceMemoryStack`, no predictor)
   on endless fresh bouncing-balls streams; the base class's recipe (resume, mirrored, XLA).
2. ``gan``: trains the `GANRectifier` on the frozen memory: each batch the memory runs the
   chunk forward (its weights never change; its stream state goes on), and the rectifier
   learns to map the memory's prediction of frame t to the true frame t. The memory's weights
   come from ``rsm_checkpoint`` (a checkpoint directory of a ``rsm`` run with the same
   hparams; anything else is an error naming the option before anything runs).
3. ``test``: primes on N = ``prime`` true frames of the fixed test sequences, then self-loops
   M = ``steps`` frames feeding the rectified prediction back (`pagi_rsm.generation`, one
   compiled loop), and reports the next-frame metrics (`pagi_rsm.metrics.video`), PNG strips,
   an animated GIF and TensorBoard images.

``chain`` runs the three in sequence, each in its own checkpoint subdirectory (``rsm``,
``gan``), so a killed chain resumes the phase it was in.

Example:

```python
from pagi_rsm import definitions
[config] = definitions.resolve(definitions.load("video/chain_cpu"), check_component=False)
print(config.workflow, config.batches)   # config.workflow_class(config).run() runs the chain
```
"""
import json
import os

from absl import logging

from pagi_rsm import checks
from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import Workflow

PHASES = ("rsm", "gan", "test", "chain")

# The paper's memory (docs/video.md#the-memory) in SequenceMemoryStack's hparam names.
PAPER_HPARAMS = {
    "num_layers": 2,
    "batch_size": 256,
    "input_shape": [34, 34, 1],
    "num_classes": None,
    "kernel_size": [5, 3],
    "strides": [2, 2],
    "groups": [64, 128],
    "cells_per_group": [8, 8],
    "active_groups": [3, 5],
    "pool_size": [2, 1],
    "connectivity": "bi",
    "inhibition_decay": [0.0],          # γ = 0: a cell rests exactly one step after firing
    "recurrent_decay": [0.0],           # ε = 0: no trace
    "recurrent_keep_rate": [0.5],
    "decoder_activation": ["sigmoid", None],   # frames in [0, 1]; layer 2 decodes a code
    "use_input_bias": [True],
    "use_recurrent_bias": [True],
    "use_feedback_bias": [True],
    "use_decoder_bias": [True],
    "duty_cycle_interval": 40,
}


class VideoWorkflow(Workflow):
    """Bouncing-balls next-frame prediction with a frozen-memory GAN (see module docstring)."""

    headline_metric = "loss"
    headline_mode = "min"
    options = Workflow.options.extend(
        Option("phase", "chain", "rsm: train the memory; gan: train the rectifier on the "
               "frozen memory of rsm_checkpoint; test: prime and self-loop; chain: all three",
               choices=PHASES),
        Option("chunk_length", 10, "frames per batch", low=1),
        Option("rsm_checkpoint", "", "phase gan/test: checkpoint directory of the rsm run, "
               "or one checkpoint's path prefix (its hparams must be this definition's)"),
        Option("gan_checkpoint", "", "phase test: checkpoint directory of the gan run, or one "
               "checkpoint's path prefix"),
        Option("gan_batches", 50000, "chain: batches of the gan phase", low=1),
        Option("rectifier", None, "GANRectifier hparams (null: its defaults, GPU-sized)",
               kind="mapping"),
        Option("prime", 50, "N: true frames before self-looping (the first replaced frame "
               "is x_{N-1})", low=2),
        Option("steps", 150, "M: self-looped frames", low=1),
        Option("test_sequences", 200, "fixed test sequences", low=1),
        Option("test_batch", 200, "sequences generated at once", low=1),
        Option("pictures", 4, "test sequences drawn in the PNG strips and the GIF", low=1),
    ).with_defaults(checkpoint_interval=1000, image_interval=1000)

    @classmethod
    def default_experiment_options(cls):
        return {"component": "sequence_memory_stack", "dataset": "bouncing_balls",
                "batches": 200000, "seed": 1234, "hparams_override": dict(PAPER_HPARAMS)}

    @classmethod
    def check_options(cls, config):
        """Receptive fields within the input, k <= groups, priming shorter than the sequence."""
        options, hp = config.workflow_options, config.hparams
        if options["phase"] in ("gan", "test") and not options["rsm_checkpoint"]:
            raise ValueError(f"workflow-options.rsm_checkpoint must name the rsm run's "
                             f"checkpoint directory for phase {options['phase']}")
        if options["phase"] == "test" and not options["gan_checkpoint"]:
            raise ValueError("workflow-options.gan_checkpoint must name the gan run's "
                             "checkpoint directory for phase test")
        groups = _per_layer(hp.get("groups"), hp.get("num_layers", 1))
        active = _per_layer(hp.get("active_groups"), hp.get("num_layers", 1))
        for layer, (g, k) in enumerate(zip(groups, active)):
            if g is not None and k is not None and k > g:
                raise ValueError(f"hparams_override.active_groups[{layer}] = {k} is more than "
                                 f"groups[{layer}] = {g}")
        shape = hp.get("input_shape")
        kernels = _per_layer(hp.get("kernel_size"), hp.get("num_layers", 1))
        if shape:
            size = min(shape[:2])
            for layer, kernel in enumerate(kernels):
                if kernel is not None and kernel > size:
                    raise ValueError(f"hparams_override.kernel_size[{layer}] = {kernel}: the "
                                     f"receptive field is larger than its input ({size})")
                size = -(-size // max(1, _per_layer(hp.get("strides"),
                                                    len(kernels))[layer] or 1))
                size //= _per_layer(hp.get("pool_size", 1), len(kernels))[layer] or 1
        checks.check_lengths(options["prime"], options["steps"], options["prime"] + options["steps"])

    # --- phases --------------------------------------------------------------------------------

    def run(self):
        phase = self.options["phase"]
        if phase == "rsm":
            return super().run()
        self.check_data(self.config)       # the checkpoints named, before anything starts
        if phase == "chain":
            return self._chain()
        results = self._gan_run() if phase == "gan" else self._test_run(
            self.options["rsm_checkpoint"], self.options["gan_checkpoint"])
        return results

    def _chain(self):
        root = self.checkpoint_dir
        self.checkpoint_dir = os.path.join(root, "rsm")
        rsm = super().run()
        logging.info("video chain: rsm phase %s", rsm.get("status"))
        if rsm.get("status") == "interrupted":     # SIGTERM/SIGINT: resume with the same command
            return rsm
        self.checkpoint_dir = os.path.join(root, "gan")
        gan = self._gan_run(rsm_checkpoint=os.path.join(root, "rsm"))
        if gan["status"] == "interrupted":
            results = {"status": "interrupted", "message": gan["message"],
                       "phases": {"rsm": _brief(rsm), "gan": _brief(gan)}}
            self._write_results(results)
            return results
        test = self._test_run(os.path.join(root, "rsm"), os.path.join(root, "gan"))
        test["phases"] = {"rsm": _brief(rsm), "gan": _brief(gan)}
        self._write_results(test)
        return test

    def build_dataset(self, start_batch):
        dataset, self.meta = self.config.dataset_fn(
            batch_size=self.hparams["batch_size"], chunk_length=self.options["chunk_length"],
            seed=self.config.seed, start_chunk=start_batch)
        return dataset

    @classmethod
    def load_data_files(cls, config):
        """Phases gan and test: the rsm (and gan) checkpoints exist and fit this definition.

        Checked before anything starts, so a wrong `rsm_checkpoint` stops `pagi run` with one
        line naming the option and leaves no run directory.
        """
        options = config.workflow_options
        if options["phase"] in ("gan", "test"):
            restore_memory(config, options["rsm_checkpoint"], "rsm_checkpoint")
        if options["phase"] == "test":
            latest_checkpoint(options["gan_checkpoint"], "gan_checkpoint")

    def frozen_memory(self, checkpoint_dir, option="rsm_checkpoint"):
        """The memory with the weights of the rsm run in `checkpoint_dir` (never trained),
        built under this run's strategy; see `restore_memory`."""
        with self.strategy.scope():  # the rectifier's model holds it: same strategy
            return restore_memory(self.config, checkpoint_dir, option)

    def _gan_run(self, rsm_checkpoint=None):
        """Trains the rectifier on the frozen memory with the base recipe (resume, fit)."""
        self._phase_batches = self.options["gan_batches"]
        self.headline_metric = "generator_mse"          # what the progress line shows
        try:
            self.setup()
            memory = self.frozen_memory(rsm_checkpoint or self.options["rsm_checkpoint"])
            start = self.resume_point()
            dataset = self.build_dataset(start_batch=start)
            model = self._gan_model(memory)
            self.restore(model)
            training = self.train(model, dataset, start)
        finally:
            self._phase_batches = None
            del self.headline_metric                     # back to the class's
        return {"status": training["status"], "batches": training["batches"],
                "logs": training["logs"], "message": training["message"]}

    @property
    def batches(self):
        return getattr(self, "_phase_batches", None) or self.config.batches

    def _gan_model(self, memory):
        from pagi_rsm.components.gan_rectifier import GANRectifier
        from pagi_rsm.components.frozen_memory_gan import FrozenMemoryGAN
        with self.strategy.scope():
            rectifier = GANRectifier(**(self.options["rectifier"] or {}))
            model = FrozenMemoryGAN(memory, rectifier)
            model.compile(jit_compile=self.jit_compile)
        return model

    def _test_run(self, rsm_checkpoint, gan_checkpoint):
        """Primes and self-loops on the fixed test set; metrics, pictures, results.json."""
        import numpy as np
        import tensorflow as tf
        from pagi_rsm.datasets.bouncing_balls import make_test_sequences
        from pagi_rsm.generation import generate
        from pagi_rsm.metrics import video as vm
        options = self.options
        if self.writer is None or self.strategy is None:
            self.setup()
        memory = self.frozen_memory(rsm_checkpoint)
        model = self._gan_model(memory)
        tf.train.Checkpoint(**self.checkpoint_items(model)).restore(
            latest_checkpoint(gan_checkpoint, "gan_checkpoint")).expect_partial()
        total = options["prime"] + options["steps"]
        # The fixed test set (its own seed, the same for every run and definition).
        frames = make_test_sequences(num_sequences=options["test_sequences"], num_frames=total)
        frames = np.asarray(frames, np.float32)
        if frames.ndim == 4:
            frames = frames[..., None]
        parts = {"prediction": [], "output": []}
        for start in range(0, len(frames), options["test_batch"]):
            out = generate(memory, frames[start:start + options["test_batch"]],
                           prime=options["prime"], steps=options["steps"],
                           rectifier=model.rectifier, jit_compile=self.jit_compile)
            for key in parts:
                parts[key].append(out[key])
        prediction, output = (np.concatenate(parts[k]) for k in ("prediction", "output"))
        report = vm.next_frame_report(frames, prediction, output, options["prime"])
        self._pictures(frames, prediction, output, report)
        copy_last = report["priming_error_copy_last"]
        results = {"status": "completed", "headline": report["priming_error_output"],
                   "headline_metric": "priming_error_output",
                   "output_over_copy_last": report["priming_error_output"] / copy_last,
                   "prediction_over_copy_last": report["priming_error_prediction"] / copy_last,
                   **report}
        self._write_results(results)
        if self.is_chief:
            print(format_test_summary(results, options, self.summary_dir), flush=True)
        return results

    def _pictures(self, frames, prediction, output, report):
        import numpy as np
        import tensorflow as tf
        from pagi_rsm.metrics import video as vm
        n = min(self.options["pictures"], len(frames))
        prime = self.options["prime"]
        strips = [vm.truth_prediction_difference(frames[i, 1:], output[i]) for i in range(n)]
        for i, picture in enumerate(strips):
            vm.write_png(os.path.join(self.summary_dir, f"strip_{i}.png"), picture)
        gif = [np.concatenate(row, axis=0) for row in zip(*[
            vm.side_by_side_frames(frames[i, 1:], output[i]) for i in range(n)])]
        vm.write_gif(os.path.join(self.summary_dir, "generated.gif"), gif)
        plot = vm.error_plot([report["error_output"], report["error_prediction"],
                              report["error_copy_last"]], prime)
        with self.writer.as_default():
            for i, picture in enumerate(strips):
                tf.summary.image(f"test/strip_{i}", picture[None, ..., None], step=0)
            tf.summary.image("test/error_per_frame", plot[None], step=0)
            for t, value in enumerate(report["error_output"]):
                tf.summary.scalar("test/error_output_per_frame", value, step=t + 1)
        self.writer.flush()

    def _write_results(self, results):
        if self.is_chief:
            with open(os.path.join(self.summary_dir, "results.json"), "w",
                      encoding="utf-8") as f:
                json.dump(results, f, indent=2, default=str)


def format_test_summary(results, options, summary_dir):
    """The test phase's one-screen summary: errors beside copy-last, mass ratio, pictures."""
    prime, copy_last = options["prime"], results["priming_error_copy_last"]
    rule = "=" * 78
    lines = [
        rule,
        f"video test: {options['test_sequences']} test sequences, prime {prime} true frames, "
        f"self-loop {options['steps']}",
        f"one step ahead from true frames (frames 1..{prime - 1}), squared error per frame "
        "summed over the 900 pixels:",
        f"  rectified output   {results['priming_error_output']:8.3f}   "
        f"{results['output_over_copy_last']:.3f} x copy-last",
        f"  memory prediction  {results['priming_error_prediction']:8.3f}   "
        f"{results['prediction_over_copy_last']:.3f} x copy-last",
        f"  copy-last frame    {copy_last:8.3f}",
        f"self-looped frames: error {results['looping_error_output']:.3f}; ball mass / truth "
        f"{results['looping_mass_ratio']:.3f} (last 50 frames: "
        f"{results['last50_mass_ratio']:.3f})",
        f"pictures    {summary_dir}/generated.gif, strip_<i>.png",
        f"results     {summary_dir}/results.json",
        rule]
    return "\n".join(lines)


def latest_checkpoint(checkpoint_dir, option):
    """The latest checkpoint in `checkpoint_dir`, or `checkpoint_dir` itself when it names one
    checkpoint (its path prefix, e.g. ``.../ckpt-300``); ValueError naming `option` if there
    is none."""
    import tensorflow as tf
    if checkpoint_dir and os.path.exists(checkpoint_dir + ".index"):
        return checkpoint_dir
    latest = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if latest is None:
        raise ValueError(f"workflow-options.{option}: no checkpoint in {checkpoint_dir!r}")
    return latest


def restore_memory(config, checkpoint_dir, option):
    """The memory of `config` with the weights of the rsm run in `checkpoint_dir`, frozen.

    Raises:
      ValueError naming `option`: no checkpoint there, or one that does not match this
        definition's memory hparams.
    """
    import tensorflow as tf
    latest = latest_checkpoint(checkpoint_dir, option)
    hparams = config.hparams
    batch, chunk = hparams["batch_size"], config.workflow_options["chunk_length"]
    memory = config.component_class(**hparams)
    memory.build({"inputs": [batch, chunk, *hparams["input_shape"]], "reset": [batch, chunk]})
    memory.trainable = False
    try:
        # The weights alone: the optimisers' slots and the dropout state are not needed.
        weights = {"weights": memory.checkpoint_items()["weights"]}
        tf.train.Checkpoint(**weights).restore(latest).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        raise ValueError(f"workflow-options.{option}: the checkpoint {latest} does not "
                         f"match this definition's memory hparams ({str(e)[:300]})") from None
    return memory


def _brief(results):
    return {k: results.get(k) for k in ("status", "batches", "headline")}


def _per_layer(value, num_layers):
    if isinstance(value, (list, tuple)):
        return list(value) + [value[-1]] * (num_layers - len(value)) if value else [None]
    return [value] * max(1, num_layers or 1)
