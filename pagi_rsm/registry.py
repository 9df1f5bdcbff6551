"""Registered workflows, components and datasets, and dotted-path lookup for user classes.

A definition or the command line names a workflow, a component and a dataset. Each name is
either a short registered name (``grammar``, ``sequence_memory_stack``) or a dotted path to an
object of the user's own (``my_project.workflows.MyWorkflow`` or
``my_project.workflows:MyWorkflow``).
Dotted paths are imported with the current working directory on ``sys.path``, as pagi did, so a
user can keep a workflow module next to their definitions without installing it.

Registered entries are import strings, resolved only when used: ``pagi list`` imports nothing
heavy, and a part that is missing or broken fails only the runs that use it.

Example:

```python
from pagi_rsm import registry
cls = registry.lookup("workflow", "grammar")            # pagi_rsm.workflows.grammar.GrammarWorkflow
for kind, name, purpose in registry.describe():
    print(kind, name, purpose)
```
"""
import dataclasses
import importlib
import os
import sys

KINDS = ("workflow", "component", "dataset")


class NameNotFoundError(LookupError):
    """A name that is neither registered nor an importable dotted path."""


@dataclasses.dataclass(frozen=True)
class Registered:
    """One registered object.

    Attributes:
      kind: one of ``KINDS``.
      name: the short name used in definitions and on the command line.
      target: ``"package.module:attribute"`` import string.
      purpose: one line shown by ``pagi list``.
      options: ``"package.module:attribute"`` of the component's hparams declaration
        (`pagi_rsm.options.Options`) in a module that does not import TensorFlow, so that
        definitions resolve and `pagi show` answers without importing the component.
    """
    kind: str
    name: str
    target: str
    purpose: str
    options: str = None


_REGISTRY = {kind: {} for kind in KINDS}


def register(kind, name, target, purpose, options=None):
    """Registers `target` ("module:attribute") under the short `name` of `kind`.

    `options` ("module:attribute", components only) names the hparams declaration.

    Raises:
      ValueError: unknown `kind`, a `name` already registered to another target, or a target
        without ``:``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:attribute', got {target!r}")
    known = _REGISTRY[kind].get(name)
    if known is not None and known.target != target:
        raise ValueError(f"{kind} {name!r} is already registered to {known.target}")
    _REGISTRY[kind][name] = Registered(kind, name, target, purpose, options)


def is_registered(kind, name):
    """True when `name` is a registered short name of `kind`."""
    return name in _REGISTRY.get(kind, {})


def options(kind, name):
    """The declared options of the registered `name` (an `Options`), or None.

    Imports only the declaration module named at registration, never the target itself.
    """
    entry = _REGISTRY[kind].get(name)
    if entry is None or entry.options is None:
        return None
    module_name, attribute = entry.options.split(":", 1)
    return _import_attribute(module_name, attribute, f"options of {kind} {name!r}")


def names(kind):
    """Sorted short names registered for `kind`."""
    return sorted(_REGISTRY[kind])


def describe():
    """``(kind, name, purpose)`` for every registered entry, grouped by kind, sorted by name."""
    return [(kind, r.name, r.purpose) for kind in KINDS for r in
            sorted(_REGISTRY[kind].values(), key=lambda r: r.name)]


def _import_attribute(module_name, attribute, what):
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only a missing *named* module is "not found"; an import error inside it is a real bug.
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise NameNotFoundError(f"{what}: module {module_name!r} not found") from None
        raise
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise NameNotFoundError(
            f"{what}: module {module_name!r} has no attribute {attribute!r}") from None


def lookup(kind, name):
    """Returns the object registered as `name`, or imported from the dotted path `name`.

    Args:
      kind: one of ``KINDS``.
      name: a registered short name, ``"package.module.Attribute"`` or
        ``"package.module:Attribute"``.

    Raises:
      NameNotFoundError (a LookupError): `name` is not registered and not importable; the
        message lists the registered names.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(name, str) or not name:
        raise NameNotFoundError(f"{kind} name must be a non-empty string, got {name!r}")
    entry = _REGISTRY[kind].get(name)
    if entry is not None:
        module_name, attribute = entry.target.split(":", 1)
        return _import_attribute(module_name, attribute, f"registered {kind} {name!r}")
    if ":" in name:
        module_name, attribute = name.split(":", 1)
    elif "." in name:
        module_name, attribute = name.rsplit(".", 1)
    else:
        raise NameNotFoundError(
            f"unknown {kind} {name!r}; registered {kind}s: {', '.join(names(kind)) or '(none)'}; "
            f"or give a dotted path such as my_package.my_module.MyClass")
    return _import_attribute(module_name, attribute, f"{kind} {name!r}")


# --- Registered entries -------------------------------------------------------------------------
# One line per entry. Purposes are shown by `pagi list`; keep them to one short line.

register("workflow", "grammar", "pagi_rsm.workflows.grammar:GrammarWorkflow",
         "Embedded Reber grammar on MNIST glyphs: RSM predicts the next symbol (paper main job)")

register("workflow", "associative_retrieval",
         "pagi_rsm.workflows.associative_retrieval:AssociativeRetrievalWorkflow",
         "Associative retrieval (Ba et al. 2016 Table 1): fast weights vs LSTM/IRNN/RNN-LN")

register("workflow", "timeseries", "pagi_rsm.workflows.timeseries:TimeseriesWorkflow",
         "Next-value prediction of a series (sine, sunspots, CO2): DeepHTM vs persistence, LSTM")

register("workflow", "continual", "pagi_rsm.workflows.continual:ContinualWorkflow",
         "Continual learning (permuted/split MNIST, split CIFAR-100): dense vs sparse forgetting")

register("component", "sequence_memory_stack",
         "pagi_rsm.components.sequence_memory_stack:SequenceMemoryStack",
         "RSM layers + predictor with local, immediate learning in its own train_step",
         options="pagi_rsm.hparams.sequence_memory_stack:OPTIONS")

register("component", "retrieval_model",
         "pagi_rsm.components.retrieval_models:RetrievalModel",
         "Associative-retrieval classifier around a fast-weights, RNN-LN, GRU-LN or LSTM layer",
         options="pagi_rsm.hparams.retrieval_models:OPTIONS")

register("component", "deep_htm", "pagi_rsm.components.deep_htm:DeepHTM",
         "HTM as one differentiable function: encoder, k-winner SP, TM, decoder (BPTT)",
         options="pagi_rsm.hparams.deep_htm:OPTIONS")

register("dataset", "timeseries", "pagi_rsm.datasets.timeseries:make_dataset",
         "Windows of a sine wave or a CSV / whitespace series file, scaled, split by time")

register("component", "continual_classifier",
         "pagi_rsm.components.continual_models:ContinualClassifier",
         "MLP or CNN, dense or sparse (k-winners, sparse weights), one head per task",
         options="pagi_rsm.hparams.continual_models:OPTIONS")

register("dataset", "continual", "pagi_rsm.datasets.continual:load_benchmark",
         "Continual benchmarks: permuted MNIST, split MNIST, split CIFAR-100 (tf.data)")

register("dataset", "grammar", "pagi_rsm.datasets.grammar:make_grammar_dataset",
         "Generated grammar strings (embedded Reber by default) rendered as MNIST glyphs, "
         "B parallel streams")

register("workflow", "video", "pagi_rsm.workflows.video:VideoWorkflow",
         "Bouncing balls: conv RSM predicts the next frame, a GAN rectifies it; prime + self-loop")

register("component", "gan_rectifier", "pagi_rsm.components.gan_rectifier:GANRectifier",
         "Conditional GAN that rectifies a predicted frame (trained on a frozen memory)",
         options="pagi_rsm.hparams.gan_rectifier:OPTIONS")

register("dataset", "bouncing_balls",
         "pagi_rsm.datasets.bouncing_balls:make_bouncing_balls_dataset",
         "Bouncing balls (3 balls, 30x30 px padded to 34x34): B streams of fresh sequences")

register("workflow", "image_sequence", "pagi_rsm.workflows.image_sequence:ImageSequenceWorkflow",
         "MNIST image sequences (fixed, higher-order, stochastic 8x9): RSM names the next digit")

register("dataset", "image_sequence",
         "pagi_rsm.datasets.image_sequence:make_image_sequence_dataset",
         "Digit sequences (cycled strings or a stochastic set) shown as MNIST images, "
         "B parallel streams, never reset")

register("component", "stream_lstm", "pagi_rsm.components.stream_lstm:StreamLSTM",
         "LSTM + softmax readout on continuing streams, truncated BPTT (image-sequence baseline)",
         options="pagi_rsm.hparams.stream_lstm:OPTIONS")

register("workflow", "language", "pagi_rsm.workflows.language:LanguageWorkflow",
         "Penn Treebank next word: RSM + word cache + uniform ensemble, perplexity")

register("dataset", "ptb", "pagi_rsm.datasets.ptb:make_language_dataset",
         "Penn Treebank word streams (training at random offsets, evaluation striped)")
