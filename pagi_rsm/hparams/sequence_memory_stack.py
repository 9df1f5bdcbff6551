"""The hparams of `SequenceMemoryStack` (RSM layers + predictor), declared once.

Per-layer options (the RSM layer's, `pagi_rsm.hparams.rsm_cell.LAYER_OPTIONS`) take one value
for every layer or a list with one value per layer. docs/rsm.md explains the algorithm;
docs/options.md lists every option with its default and range.
"""
import dataclasses

from pagi_rsm.hparams import rsm_cell
from pagi_rsm.options import Option, Options

SCHEDULES = ("chunk", "step")
CONNECTIVITIES = ("ff", "bi")
PREDICTOR_NORMS = (None, "sum", "abs_sum")


def _interval(name):
    return Option(name, [0, -1], "[first, stop) time steps during which it learns; stop <= 0: "
                  "forever", kind="list", items="int", length=2)


def _masses_sum_to_one(values):
    if values["num_classes"] is None:  # no predictor: the masses are not used
        return
    total = values["layer_mass"] + values["uniform_mass"]
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"layer_mass and uniform_mass must be >= 0 and sum to 1, got "
                         f"{values['layer_mass']} + {values['uniform_mass']}")


def _per_layer_lengths(values):
    layers = values["num_layers"]
    for option in rsm_cell.LAYER_OPTIONS + (POOL_SIZE,) + CONV_OPTIONS:
        value = values.get(option.name)
        if isinstance(value, list) and len(value) not in (1, layers):
            raise ValueError(f"hparam {option.name!r} has {len(value)} entries but num_layers "
                             f"is {layers}: give 1 or {layers} values")


def _duty_cycle_interval(values):
    if values["duty_cycle_interval"] == 0:
        raise ValueError("duty_cycle_interval must be >= 1 (time steps) or -1 (off), got 0")


POOL_SIZE = Option("pool_size", 1, "max-pool the code of this layer before the next layer: over "
                   "groups of this many cells (fully connected; must divide its cells) or this "
                   "many x this many positions (convolutional)", low=1, per_layer=True)
_GEOMETRY = "-1, an integer >= 1, or a pair [height, width] of them"
CONV_OPTIONS = (
    Option("kernel_size", -1, "-1: a fully connected RSMCell layer; else the receptive field of "
           "a ConvRSM layer (docs/conv_rsm.md)", kind="any", per_layer=True,
           describe=_GEOMETRY),
    Option("strides", -1, "stride of a ConvRSM layer (-1: the kernel size)", kind="any",
           per_layer=True, describe=_GEOMETRY),
)

OPTIONS = Options(
    *[dataclasses.replace(o, per_layer=True) for o in rsm_cell.LAYER_OPTIONS],
    POOL_SIZE,
    *CONV_OPTIONS,
    *rsm_cell.SHARED_OPTIONS,
    Option("num_layers", 1, "number of RSM layers", low=1),
    Option("batch_size", 80, "B, parallel streams (the per-replica state is sized from it)",
           low=1),
    Option("input_dim", None, "size of one input step (set by the workflow from its data); or "
           "give input_shape", kind="int", low=1),
    Option("input_shape", None, "[height, width, channels] of frame inputs (convolutional "
           "layers); or give input_dim", kind="list", items="int", low=1),
    Option("num_classes", None, "number of label classes (set by the workflow from its data); "
           "null: no predictor, reconstruction only", kind="int", low=1),
    Option("connectivity", "ff", "ff: feed-forward only; bi: feedback from layer l+1 to l",
           choices=CONNECTIVITIES),
    Option("learning_rate", 5e-4, "Adam learning rate of the memory layers (and of the "
           "predictor unless predictor_learning_rate is set)", low=0.0, low_open=True),
    Option("update_schedule", "step", "step: one update per time step (the original); chunk: "
           "one update per chunk on the mean loss", choices=SCHEDULES),
    _interval("memory_training_interval"),
    _interval("predictor_training_interval"),
    Option("predictor_hidden_size", [200], "hidden layer sizes of the predictor", kind="list",
           items="int", low=1),
    Option("predictor_nonlinearity", ["leaky_relu", "leaky_relu"], "activation after each "
           "predictor layer (hidden layers, then logits); none for linear", kind="list",
           items="str"),
    Option("predictor_keep_rate", 1.0, "dropout keep rate of the predictor", low=0.0, high=1.0,
           low_open=True),
    Option("predictor_init_sd", 0.03, "standard deviation of the predictor's initial weights",
           low=0.0, low_open=True),
    Option("predictor_l2", 0.0, "L2 weight decay of the predictor", low=0.0),
    Option("predictor_label_smoothing", 0.0, "label smoothing of the predictor's loss",
           low=0.0, high=1.0, high_open=True),
    Option("predictor_norm", "sum", "normalisation of the predictor's input: sum, abs_sum or "
           "null", choices=PREDICTOR_NORMS),
    Option("predictor_norm_eps", 1e-11, "epsilon of the predictor's input normalisation",
           low=0.0, low_open=True),
    Option("predictor_input_decay", 0.0, "decay of the predictor's input trace (0: none)",
           low=0.0, high=1.0, high_open=True),
    Option("predictor_input_norm_first", True, "normalise the predictor's input before its "
           "trace"),
    Option("predictor_input_reset", False, "clear the predictor's input trace at a reset"),
    Option("predictor_learning_rate", None, "the predictor's own Adam learning rate (null: "
           "learning_rate)", kind="float", low=0.0, low_open=True),
    Option("layer_mass", 1.0, "weight of the predictor in the ensemble", low=0.0),
    Option("uniform_mass", 0.0, "weight of the uniform distribution in the ensemble", low=0.0),
    Option("duty_cycle_interval", 10, "time steps between duty-cycle (cell usage) updates; -1: "
           "never", low=-1, aliases=("freq_update_interval",)),
    Option("duty_cycle_rate", 0.1, "rate of the duty cycle's moving average", low=0.0,
           high=1.0, aliases=("freq_learning_rate",)),
    Option("boost_strength_factor", 1.0, "the boost strength is multiplied by this every "
           "boost_decay_interval time steps (bRSM: 0.85; 1: constant)", low=0.0, high=1.0,
           low_open=True),
    Option("boost_decay_interval", 1250, "time steps between two decays of the boost strength",
           low=1),
    Option("accuracy_window", 2000, "test-state predictions in the accuracy window", low=1),
    Option("seed", None, "seed of the dropout draws (null: unseeded)", kind="int", low=0),
    checks=rsm_cell.CHECKS + (_per_layer_lengths, _masses_sum_to_one, _duty_cycle_interval),
)
