"""The language workflow: RSM predicts the next word of the Penn Treebank (docs/language.md).

B training streams read the training text at random offsets (a jump and a memory reset after
at most 3000 words); each word enters the RSM as a fixed embedding ([K, h, w], see
`pagi_rsm.datasets.embeddings`) and the predictor gives a distribution over the K = 10,000
words. Every `validate_interval` batches, and at the end, the model is scored on the whole
validation file (striped streams, fresh memory); the ensemble (the predictor, a decaying
unigram cache of the words seen and a uniform distribution, docs/language.md#ensemble) is
reported next to the predictor alone and the cache + uniform alone. After training the masses
and the cache decay are searched on the validation file and the test file is scored once with
them. Everything lands in TensorBoard (``valid/*``, ``test/*``), ``curve.jsonl`` and
``results.json``.

The data is read from ``workflow-options.data_dir`` (default: ``$PAGI_RSM_PTB_DIR``, else
``$PAGI_RSM_SHARED_DATA/ptb``, else ``../shared/data/ptb``) and checked before a run starts.

Example:

```python
from pagi_rsm import definitions
[config] = definitions.resolve(definitions.load("language/rsm_paper"),
                               experiment_overrides={"batches": 100}, check_component=False)
print(config.workflow, config.batches)   # config.workflow_class(config).run() trains it
```
"""
import functools
import json
import math
import os

from pagi_rsm.options import Option
from pagi_rsm.workflows.workflow import Workflow

CURVE_FILE = "curve.jsonl"

# The README's PTB values (docs/language.md#configurations) in SequenceMemoryStack's names;
# input_dim and num_classes come from the embedding and the vocabulary.
PAPER_HPARAMS = {
    "num_layers": 1,
    "batch_size": 300,
    "groups": [600],
    "cells_per_group": [8],
    "active_groups": [20],
    "inhibition_decay": [0.8],
    "recurrent_decay": [0.85],
    "recurrent_keep_rate": [0.5],
    "predictor_hidden_size": [1200],
    "predictor_nonlinearity": ["leaky_relu", "none"],
    "predictor_norm": "sum",
    "predictor_input_decay": 0.85,
    "predictor_input_norm_first": False,
    "predictor_l2": 6.08e-7,
    "learning_rate": 5e-4,
    "duty_cycle_interval": 40,
}


def data_dir(options):
    """The PTB directory of a run's workflow options (see the module docstring)."""
    if options.get("data_dir"):
        return options["data_dir"]
    if os.environ.get("PAGI_RSM_PTB_DIR"):
        return os.environ["PAGI_RSM_PTB_DIR"]
    if os.environ.get("PAGI_RSM_SHARED_DATA"):
        return os.path.join(os.environ["PAGI_RSM_SHARED_DATA"], "ptb")
    return os.path.join("..", "shared", "data", "ptb")


def _corpus(directory):
    """The corpus of `directory`, read once per process while its files are unchanged."""
    stamp = []
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            info = os.stat(os.path.join(directory, name))
            stamp.append((name, info.st_mtime_ns, info.st_size))
    return _read_corpus(os.path.abspath(directory), tuple(stamp))


@functools.lru_cache(maxsize=2)
def _read_corpus(directory, stamp):
    from pagi_rsm.datasets.ptb import load_ptb
    return load_ptb(directory)


def embedding_width(options, vocab_size):
    """h·w of the embedding the options ask for, without computing it."""
    import numpy as np
    kind = options["embedding"]
    if kind == "binary":
        return 2 * max(1, math.ceil(math.log2(vocab_size)))
    if kind == "file":
        path = options["embedding_file"]
        if not path or not os.path.isfile(path):
            return None   # load_data_files reports it
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        return int(np.prod(shape[1:])) if len(shape) > 1 else None
    return options["embedding_size"]


def _masses_sum_to_one(values):
    total = values["layer_mass"] + values["cache_mass"] + values["uniform_mass"]
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"layer_mass, cache_mass and uniform_mass must sum to 1, got "
                         f"{values['layer_mass']} + {values['cache_mass']} + "
                         f"{values['uniform_mass']} = {total:g}")


class LanguageWorkflow(Workflow):
    """Trains a `SequenceMemoryStack` on PTB word streams (see the module docstring).

    Its options are declared in `options` (docs/options.md, ``pagi run --workflow=language
    --help``).
    """

    headline_metric = "ensemble_perplexity"
    headline_mode = "min"
    options = Workflow.options.extend(
        Option("data_dir", "", "directory of ptb.{train,valid,test}.txt[.gz] (empty: "
               "$PAGI_RSM_PTB_DIR, $PAGI_RSM_SHARED_DATA/ptb, ../shared/data/ptb)"),
        Option("vocab_size", 10000, "words in the training vocabulary (checked against the "
               "data)", low=2),
        Option("embedding", "binary", "input code of a word: binary (index bits + complement), "
               "sparse (random binary), dense (random), distributional (PPMI-SVD of the "
               "training text), file (embedding_file)",
               choices=("binary", "sparse", "dense", "distributional", "file")),
        Option("embedding_size", 100, "width of sparse, dense and distributional embeddings",
               low=1),
        Option("embedding_active", 20, "ones per word of the sparse embedding", low=1),
        Option("embedding_file", "", "a .npy of shape [vocab_size, h, w] or [vocab_size, d] "
               "(embedding: file)"),
        Option("embedding_cache_dir", "", "where computed embeddings are cached by content hash "
               "(empty: ~/.cache/pagi_rsm/embeddings)"),
        Option("chunk_length", 10, "time steps per batch", low=1),
        Option("max_length", 3000, "longest training segment before a jump to a random offset",
               low=1),
        Option("validate_interval", 2000, "batches between validations on the whole validation "
               "file; 0: only at the end", low=0),
        Option("eval_batch_size", 300, "parallel streams striped over an evaluation file",
               low=1),
        Option("eval_split_tokens", 0, "score only the first this many tokens of an evaluation "
               "file (0: all; for quick tests)", low=0),
        Option("layer_mass", 0.87, "ensemble weight of the predictor", low=0.0, high=1.0),
        Option("cache_mass", 0.09, "ensemble weight of the word cache", low=0.0, high=1.0),
        Option("uniform_mass", 0.04, "ensemble weight of the uniform distribution", low=0.0,
               high=1.0),
        Option("cache_decay", 0.99, "decay of the word cache per word", low=0.0, high=1.0),
        Option("search_cache_decays", [0.98, 0.99, 0.995], "cache decays tried by the mass "
               "search", kind="list", items="float", low=0.0, high=1.0),
        Option("search_masses", True, "after training, choose the masses and the cache decay "
               "on the validation file before scoring the test file"),
    ).with_defaults(checkpoint_interval=1000, image_interval=0)

    @classmethod
    def default_experiment_options(cls):
        return {"component": "sequence_memory_stack", "dataset": "ptb", "batches": 20000,
                "seed": 42, "hparams_override": dict(PAPER_HPARAMS)}

    @classmethod
    def check_options(cls, config):
        """The ensemble masses must sum to 1."""
        _masses_sum_to_one(config.workflow_options)

    @classmethod
    def complete_config(cls, config):
        """Sets `input_dim` from the embedding and `num_classes` from `vocab_size`."""
        options = config.workflow_options
        derived = {"num_classes": options["vocab_size"],
                   "input_dim": embedding_width(options, options["vocab_size"])}
        hparams = config.hparams
        for key, value in derived.items():
            if value is None:
                continue
            if hparams.get(key) is None:
                hparams[key] = value
            elif hparams[key] != value:
                raise ValueError(f"hparams_override.{key} is {hparams[key]} but the data "
                                 f"(embedding={options['embedding']}, vocab_size="
                                 f"{options['vocab_size']}) gives {value}; leave it unset")

    @classmethod
    def load_data_files(cls, config):
        """Reads and checks the three PTB files and the embedding before a run starts."""
        options = config.workflow_options
        corpus = _corpus(data_dir(options))
        if corpus.vocab_size != options["vocab_size"]:
            raise ValueError(f"workflow-options.vocab_size is {options['vocab_size']} but "
                             f"{corpus.paths['train']} has {corpus.vocab_size} distinct tokens")
        if options["embedding"] == "file":
            from pagi_rsm.datasets.embeddings import load_file
            load_file(options["embedding_file"], corpus.vocab_size)

    _scorer = None

    # --- data -------------------------------------------------------------------------------------

    @property
    def corpus(self):
        return _corpus(data_dir(self.options))

    @functools.cached_property
    def embedding(self):
        from pagi_rsm.datasets.embeddings import make_embedding
        o = self.options
        cache = o["embedding_cache_dir"] or os.path.join(
            os.path.expanduser("~"), ".cache", "pagi_rsm", "embeddings")
        return make_embedding(o["embedding"], self.corpus.train, self.corpus.vocab_size,
                              size=o["embedding_size"], active=o["embedding_active"],
                              seed=self.config.seed, path=o["embedding_file"], cache_dir=cache)

    def build_dataset(self, start_batch):
        from pagi_rsm.datasets.ptb import make_language_dataset
        return make_language_dataset(
            self.corpus.train, self.embedding, self.hparams["batch_size"],
            self.options["chunk_length"], mode="train", seed=self.config.seed,
            start_chunk=start_batch, max_length=self.options["max_length"])

    def _eval_dataset(self, split):
        from pagi_rsm.datasets.ptb import make_language_dataset
        ids = self.corpus.split(split)
        if self.options["eval_split_tokens"]:
            ids = ids[:self.options["eval_split_tokens"]]
        return make_language_dataset(ids, self.embedding, self.options["eval_batch_size"],
                                     self.options["chunk_length"], mode="eval"), ids

    # --- evaluation -------------------------------------------------------------------------------

    def _masses(self):
        o = self.options
        return {"layer_mass": o["layer_mass"], "cache_mass": o["cache_mass"],
                "uniform_mass": o["uniform_mass"], "cache_decay": o["cache_decay"]}

    def score(self, model, split, masses):
        """(metrics, TokenScores) of `split` with the ensemble `masses`."""
        from pagi_rsm.metrics.language_model import Scorer, summarize
        if self._scorer is None or self._scorer.model is not model:
            decays = sorted({self.options["cache_decay"], *self.options["search_cache_decays"]})
            self._scorer = Scorer(model, self.corpus.vocab_size, decays)
        dataset, ids = self._eval_dataset(split)
        scores = self._scorer.score(
            dataset, (masses["layer_mass"], masses["cache_mass"], masses["uniform_mass"]),
            masses["cache_decay"])
        metrics = summarize(scores, self.corpus.vocab_size, masses, self.corpus.unigram(), ids)
        return metrics, scores

    def _record(self, phase, batch, metrics, extra=None):
        import tensorflow as tf
        with self.writer.as_default():
            for key, value in metrics.items():
                tf.summary.scalar(f"{phase}/{key}", value, step=batch)
        self.writer.flush()
        if self.is_chief:
            row = {"phase": phase, "batch": batch, **metrics, **(extra or {})}
            with open(os.path.join(self.summary_dir, CURVE_FILE), "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def validate(self, model, batch):
        """Scores the validation file with the configured masses; records and returns it."""
        import time
        started = time.time()
        metrics, _ = self.score(model, "valid", self._masses())
        metrics["seconds"] = round(time.time() - started, 2)
        self._record("valid", batch, metrics)
        return metrics

    def extra_callbacks(self):
        """Validation every `validate_interval` batches."""
        import keras
        interval, workflow, clock = self.options["validate_interval"], self, self.clock

        class Validate(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if interval and clock.batch % interval == 0 and clock.batch < workflow.batches:
                    workflow.validate(self.model, clock.batch)

        return [Validate()]

    def evaluate(self, model, training):
        """Validation at the end, the mass search on it, then the test file once."""
        if training["status"] == "nan":
            return {}
        from pagi_rsm.metrics.language_model import mixture_log_prob, perplexity, search_masses
        batch = training["batches"]
        masses = self._masses()
        valid, scores = self.score(model, "valid", masses)
        chosen = dict(masses)
        if self.options["search_masses"]:
            found = search_masses(scores, self.corpus.vocab_size)
            chosen = {k: found[k] for k in masses}
            valid["searched_ensemble_perplexity"] = found["perplexity"]
        self._record("valid", batch, valid, {"searched_masses": chosen})
        test, scores = self.score(model, "test", chosen)
        if chosen != masses:  # the same scores give the configured ensemble's perplexity
            d = scores.decays.index(masses["cache_decay"])
            test["configured_ensemble_perplexity"] = perplexity(mixture_log_prob(
                scores.p_layer, scores.p_cache[d], masses["layer_mass"], masses["cache_mass"],
                masses["uniform_mass"], self.corpus.vocab_size))
        self._record("test", batch, test, {"masses": chosen})
        out = dict(test)
        out.update({f"valid_{k}": v for k, v in valid.items()})
        out.update({f"mass_{k}": v for k, v in chosen.items()})
        return out

