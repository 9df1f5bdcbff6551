"""The image-sequence workflow: RSM predicts the next digit of sequences shown as MNIST images.

The RSM paper's second experiment ("partially observable" sequences; docs/image_sequence.md):
B = 300 streams, each cycling a fixed digit string ("0123456789", or the higher-order
"012340123404321") or walking a stochastic set of sequences (the 8 x 9 set "pagi9"), one MNIST
image per step, never reset. The memory sees only images (a random exemplar per step, so the
digit must be inferred) and its predictor names the next digit. README values: g = 200 groups
x c = 6 cells, k = 25, gamma = 0.5, epsilon = 0, a 1200-unit predictor.

What a run reports, besides the base class's:

- ``train/accuracy`` (mean over the Keras epoch = checkpoint interval) and
  ``train/test_state_accuracy`` (every step is scored: the online accuracy over the last
  `accuracy_window` predictions), on the training streams (MNIST training images);
- every `eval_interval` batches, ``heldout/accuracy`` of the model's own predictor on
  `eval_streams` held-out streams rendered from MNIST *test* images (seed + 1), run from a zero
  state with the memory frozen, without touching the training streams;
  ``heldout/determined_accuracy`` (the steps the current sequence's earlier digits determine),
  ``heldout/ceiling`` and ``train/ceiling`` (the Bayes ceiling of the set, 8/9 for pagi9),
  ``heldout/fraction_of_ceiling``, and the confusion matrix as an image;
- the headline: the held-out accuracy after training (results.json ``evaluation``).

The run stops once the online accuracy over a full window reaches `stop_target`.

Example:

```python
from pagi_rsm import definitions
[config] = definitions.resolve(workflow="image_sequence",
                               experiment_overrides={"batches": 50}, check_component=False)
print(config.hparams["groups"])          # config.workflow_class(config).run() trains it
```
"""
from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import Workflow

# README values (Cerenaut/rsm README table; docs/image_sequence.md) in SequenceMemoryStack's
# hparam names. input_dim and num_classes are set by the dataset (784 pixels, 10 digits).
PAPER_HPARAMS = {
    "num_layers": 1,
    "batch_size": 300,
    "groups": [200],
    "cells_per_group": [6],
    "active_groups": [25],
    "inhibition_decay": [0.5],
    "recurrent_decay": [0.0],
    "predictor_hidden_size": [1200],
    "learning_rate": 5e-4,
    # The predictor as the grammar workflow found works best on this stack
    # (docs/running.md#the-grammar-jobs-settings-and-what-they-rest-on):
    # leaky-ReLU hidden layer, linear logits, the code itself (no sum normalisation), its own
    # lr 2e-3, and an input trace max(0.8 tau, y) of the last codes. The trace lets the
    # predictor read the digits seen before as well as the current one, so a badly written
    # image is read in its context; without it the held-out accuracy on "0123456789" stalls at
    # 95-96% and then falls as the predictor fits the training images
    # (docs/image_sequence.md#results). It decays, so the never-reset streams need no reset.
    "predictor_nonlinearity": ["leaky_relu", "none"],
    "predictor_norm": None,
    "predictor_learning_rate": 2e-3,
    "predictor_input_decay": 0.8,
    "duty_cycle_interval": 40,
    # every step is scored: test_state_accuracy is the online accuracy over the last 100 steps
    "accuracy_window": 30000,
}


class ImageSequenceWorkflow(Workflow):
    """Trains a `SequenceMemoryStack` (or, with ``model: lstm``, the `StreamLSTM` baseline) on
    `make_image_sequence_dataset` streams (see the module docstring).

    Its options are declared in `options` (listed in docs/options.md and by
    ``pagi run --workflow=image_sequence --help``).
    """

    headline_metric = "heldout_accuracy"
    headline_mode = "max"
    MODELS = ("rsm", "lstm")
    options = Workflow.options.extend(
        Option("sequences", "0123456789", "the digit sequences: a digit string (cycled), "
               "pagi9 (the stochastic 8x9 set), or a list of sequences (digit strings or lists "
               "of digits; the next one drawn uniformly at each end)", kind="any"),
        Option("sequence_file", "", "a file of sequences, one line of digits each; replaces "
               "sequences when set"),
        Option("exemplars", "random", "the image of a digit: random (a fresh MNIST exemplar per "
               "step) or same (the split's first exemplar)", choices=("random", "same")),
        Option("chunk_length", 10, "time steps per batch (the LSTM's truncation length)", low=1),
        Option("mnist_dir", "", "directory of the MNIST IDX files (empty: $PAGI_RSM_MNIST_DIR "
               "or a tensorflow-datasets copy)"),
        Option("eval_interval", 250, "batches between held-out evaluations (MNIST test images, "
               "seed + 1, memory frozen); 0: only after training", low=0),
        Option("eval_streams", 100, "held-out streams", low=1),
        Option("eval_warmup_chunks", 5, "held-out chunks run from a zero state before scoring",
               low=0),
        Option("eval_chunks", 10, "held-out chunks scored", low=1),
        Option("model", "rsm", "rsm: the definition's component; lstm: the truncated-BPTT LSTM "
               "baseline (lstm_units, lstm_learning_rate; batch_size and accuracy_window from "
               "the hparams)", choices=MODELS),
        Option("lstm_units", 450, "units of the LSTM baseline", low=1),
        Option("lstm_learning_rate", 1e-3, "Adam learning rate of the LSTM baseline", low=0,
               low_open=True),
    ).with_defaults(
        checkpoint_interval=250, image_interval=250,
        # stop once the online accuracy over the last accuracy_window predictions holds
        stop_metric="test_state_accuracy", stop_target=0.99, stop_mode="max",
        stop_window=30000, stop_window_metric="test_state_count")

    @classmethod
    def default_experiment_options(cls):
        return {"component": "sequence_memory_stack", "dataset": "image_sequence",
                "batches": 5000, "seed": 1234,
                "hparams_override": dict(PAPER_HPARAMS)}

    @classmethod
    def complete_config(cls, config):
        """Checks the sequences and exemplars; sets `input_dim` 784 and `num_classes` 10."""
        from pagi_rsm.datasets import image_sequence
        options = config.workflow_options
        try:
            cls._sequences(options)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"workflow-options: {e}") from None
        hparams = config.hparams
        for key, value in (("input_dim", 28 * 28), ("num_classes", image_sequence.NUM_CLASSES)):
            if hparams.get(key) is None:
                hparams[key] = value
            elif hparams[key] != value:
                raise ValueError(f"hparams_override.{key} is {hparams[key]} but the image "
                                 f"sequences give {value}; leave it unset")

    @classmethod
    def load_data_files(cls, config):
        """Reads the MNIST images the run needs (training split; test split for held-out
        streams), so that missing files stop the run before it starts."""
        from pagi_rsm.datasets import mnist
        options = config.workflow_options
        if options["exemplars"] == "random":
            mnist.load_mnist(options["mnist_dir"] or None, split="train")
        mnist.load_mnist(options["mnist_dir"] or None, split="test")

    @staticmethod
    def _sequences(options):
        from pagi_rsm.datasets import image_sequence
        if options["sequence_file"]:
            return image_sequence.parse_sequences(sequence_file=options["sequence_file"])
        return image_sequence.parse_sequences(options["sequences"])

    def _streams(self, streams, seed, start_chunk, split):
        """(dataset, meta) of `streams` image-sequence streams of `split` from chunk
        `start_chunk`."""
        return self.config.dataset_fn(
            sequences=self._sequences(self.options), batch_size=streams,
            chunk_length=self.options["chunk_length"], exemplars=self.options["exemplars"],
            split=split, seed=seed, start_chunk=start_chunk,
            mnist_dir=self.options["mnist_dir"] or None)

    def build_dataset(self, start_batch):
        dataset, self.meta = self._streams(self.hparams["batch_size"], self.config.seed,
                                           start_batch, "train")
        return dataset

    def create_component(self):
        """The definition's component, or the LSTM baseline with ``model: lstm``."""
        if self.options["model"] == "rsm":
            return super().create_component()
        from pagi_rsm.components.stream_lstm import StreamLSTM
        return StreamLSTM(units=self.options["lstm_units"],
                          input_dim=self.hparams["input_dim"],
                          num_classes=self.hparams["num_classes"],
                          batch_size=self.hparams["batch_size"],
                          learning_rate=self.options["lstm_learning_rate"],
                          accuracy_window=self.hparams["accuracy_window"])

    def _heldout(self):
        """The held-out evaluation callback (MNIST test images, seed + 1)."""
        from pagi_rsm.callbacks.heldout_accuracy import HeldOutAccuracy
        options = self.options
        held_out = (self.config.seed + 1) % 2 ** 64
        if getattr(self, "_heldout_callback", None) is None:
            self._heldout_callback = HeldOutAccuracy(
                self.writer, self.clock, max(options["eval_interval"], 1),
                lambda: self._streams(options["eval_streams"], held_out, 0, "test")[0],
                num_classes=self.hparams["num_classes"], chunks=options["eval_chunks"],
                warmup_chunks=options["eval_warmup_chunks"], masks=("determined",),
                ceiling=self.meta.ceiling)
        return self._heldout_callback

    def extra_callbacks(self):
        """Held-out evaluation every `eval_interval` batches (none when 0)."""
        return [self._heldout()] if self.options["eval_interval"] else []

    def evaluate(self, model, training):
        """The held-out evaluation of the final model, plus the ceilings."""
        results = super().evaluate(model, training)
        if training["status"] == "nan":
            return results
        callback = self._heldout()
        values = callback.evaluate(model)
        callback.write(values, training["batches"])
        self.writer.flush()
        results.update({f"heldout_{k}": v for k, v in values.items()
                        if k not in ("ceiling",)})
        results["ceiling"] = self.meta.ceiling
        results["first_order_ceiling"] = self.meta.first_order_ceiling
        return results
