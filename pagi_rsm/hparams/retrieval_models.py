"""The hparams of `RetrievalModel` (the associative-retrieval models), declared once.

docs/fast_weights.md explains the models; docs/options.md lists the options.
"""
from pagi_rsm.hparams.fast_weights import IMPLEMENTATIONS
from pagi_rsm.options import Option, Options

KINDS = ("fast_weights", "rnn_ln", "control", "gru_ln", "lstm")
"""Model kinds accepted by `build_model` / `RetrievalModel`."""


def _fast_learning_rate(values):
    if values["kind"] == "fast_weights" and not values["fast_learning_rate"] > 0:
        raise ValueError("fast_learning_rate must be a number > 0 for kind='fast_weights' (use "
                         f"kind='rnn_ln' for 0), got {values['fast_learning_rate']!r}")


def _learning_rate_schedule(values):
    final, lr = values["final_learning_rate"], values["learning_rate"]
    if final is not None and not 0 < final <= lr:
        raise ValueError(f"final_learning_rate must be None or a number in (0, learning_rate="
                         f"{lr}], got {final!r}")
    if final is not None and values["decay_steps"] == 0:
        raise ValueError("decay_steps must be > 0 when final_learning_rate is set, got 0")


OPTIONS = Options(
    Option("kind", "fast_weights", "the recurrent layer", choices=KINDS),
    Option("units", 50, "R, hidden size of the recurrent layer", low=1),
    Option("decay", 0.95, "fast-weight decay lambda (fast_weights only)", low=0.0, high=1.0,
           describe="in [0, 1]"),
    Option("fast_learning_rate", 0.5, "fast-weight learning rate eta (fast_weights only)",
           low=0.0),
    Option("inner_steps", 1, "inner-loop steps S (fast_weights only)", low=1),
    Option("implementation", "attention", "FastWeightsCell implementation",
           choices=IMPLEMENTATIONS),
    Option("max_length", None, "history length of the attention form (null: 11, K = 4)",
           kind="int", low=1),
    Option("preliminary_layer_norm", False, "layer-normalise the preliminary vector too"),
    Option("learning_rate", 1e-3, "Adam learning rate", low=0.0, low_open=True),
    Option("final_learning_rate", None, "cosine-decay the learning rate to this value over "
           "decay_steps (null: constant)", kind="float"),
    Option("decay_steps", 0, "length of the learning-rate decay in steps (0: none)", low=0),
    Option("clip_norm", 5.0, "global-norm gradient clip (null or 0: none)", kind="float",
           low=0.0, nullable=True),
    Option("unroll", False, "unroll the recurrent loop over time"),
    Option("input_units", 0, "size of a ReLU encoder of each symbol (0: none)", low=0),
    Option("readout_units", 0, "size of a ReLU layer before the softmax (0: none)", low=0),
    Option("num_symbols", 37, "input features", low=1),
    Option("num_classes", 10, "softmax classes", low=2),
    checks=(_fast_learning_rate, _learning_rate_schedule),
)
