"""The options of one RSM layer (`pagi_rsm.RSMCell`; per layer in `SequenceMemoryStack`).

Names are chosen so they cannot be misread; the original pagi names and this project's earlier
names are accepted in definitions as aliases (docs/options.md lists them). docs/rsm.md explains
what each option does in the algorithm.
"""
from pagi_rsm.options import Option, Options

NORMS = (None, "sum", "abs_sum")
RECURRENT_PATHS = ("auto", "dense", "sparse")
DECODER_POOLINGS = ("max", "sum")

_UNIT = dict(low=0.0, high=1.0)
_KEEP = dict(low=0.0, high=1.0, low_open=True)


def _layers(*values):
    """Per-layer values side by side (scalars and one-entry lists broadcast)."""
    lists = [list(v) if isinstance(v, (list, tuple)) else [v] for v in values]
    n = max(len(v) for v in lists)
    return list(zip(*[v * n if len(v) == 1 else v for v in lists])), n


def _active_groups_fit(values):
    pairs, n = _layers(values.get("groups"), values.get("active_groups"))
    for layer, (g, a) in enumerate(pairs):
        if isinstance(a, int) and isinstance(g, int) and a > g:
            where = f" (layer {layer})" if n > 1 else ""
            raise ValueError(f"active_groups (k, active groups) must be <= groups ({g}), "
                             f"got {a}{where}")


def _sparse_path_needs_no_trace(values):
    pairs, _ = _layers(values.get("recurrent_path"), values.get("recurrent_decay"))
    for path, decay in pairs:
        if path == "sparse" and decay:
            raise ValueError("recurrent_path='sparse' needs recurrent_decay == 0 (a trace has "
                             f"more than k non-zeros), got recurrent_decay={decay!r}")


# The options a stack sets per layer, in the order of RSMCell's signature.
LAYER_OPTIONS = (
    Option("groups", 160, "g, groups (columns) of cells", low=1, aliases=("cols",)),
    Option("cells_per_group", 3, "c, cells per group", low=1, aliases=("cells_per_col",)),
    Option("active_groups", 25, "k, groups active at each step (1 <= k <= groups)", low=1,
           aliases=("sparsity",)),
    Option("inhibition_decay", 0.1, "gamma, decay of the refractory inhibition trace", **_UNIT),
    Option("recurrent_decay", 0.0, "epsilon, decay of the recurrent input trace (0: no trace)",
           aliases=("rb_decay_rate",), **_UNIT),
    Option("recurrent_decay_floor", 0.0, "trace values below it are zeroed", low=0.0,
           aliases=("rb_decay_floor",)),
    Option("recurrent_norm", "sum", "normalisation of the recurrent input: sum (signed sum, the "
           "original), abs_sum, or null", choices=NORMS, aliases=("rb_norm_type",)),
    Option("recurrent_norm_eps", 1e-11, "epsilon of the recurrent normalisation", low=0.0,
           low_open=True, aliases=("rb_norm_eps",)),
    Option("recurrent_keep_rate", 1.0, "dropout keep rate of the recurrent/feedback input",
           aliases=("rb_keep_rate",), **_KEEP),
    Option("input_decay", 0.0, "decay of the feed-forward input trace (0: no trace)",
           aliases=("f_decay_rate",), **_UNIT),
    Option("input_decay_floor", 0.0, "input trace values below it are zeroed", low=0.0,
           aliases=("f_decay_floor",)),
    Option("input_norm", None, "normalisation of the feed-forward input: sum, abs_sum or null",
           choices=NORMS, aliases=("f_norm_type",)),
    Option("input_norm_eps", 1e-11, "epsilon of the input normalisation", low=0.0,
           low_open=True, aliases=("f_norm_eps",)),
    Option("input_keep_rate", 1.0, "dropout keep rate of the feed-forward input",
           aliases=("f_keep_rate",), **_KEEP),
    Option("hidden_keep_rate", 1.0, "dropout keep rate of the refractory multiplier", **_KEEP),
    Option("boost_strength", 0.0, "> 0: rank cells by drive x exp((k/n - duty cycle) x "
           "strength) instead of inhibition", low=0.0, aliases=("boost_factor",)),
    Option("decoder_activation", None, "activation of the decoder (null: linear)", kind="str",
           aliases=("decode_nonlinearity",)),
    Option("use_input_bias", False, "feed-forward bias", aliases=("f_bias",)),
    Option("use_recurrent_bias", False, "recurrent bias", aliases=("r_bias",)),
    Option("use_feedback_bias", False, "feedback bias", aliases=("b_bias",)),
    Option("use_decoder_bias", True, "decoder bias", aliases=("d_bias",)),
    Option("recurrent_path", "auto", "recurrent matmul: dense, sparse (gather the k active rows; "
           "needs recurrent_decay 0) or auto", choices=RECURRENT_PATHS),
    Option("decoder_pooling", "max", "how the decoder reads a group: max over its cells (the "
           "original) or sum", choices=DECODER_POOLINGS),
)

# Options of the cell that a stack sets once for all its layers.
SHARED_OPTIONS = (
    Option("activation", "tanh", "phi, activation of the active cells",
           aliases=("hidden_nonlinearity",)),
    Option("inhibition_with_mask", True, "inhibition from the binary mask (true) or from the "
           "activity y (false)"),
    Option("input_norm_first", False, "normalise the input before taking its trace"),
)

CHECKS = (_active_groups_fit, _sparse_path_needs_no_trace)

OPTIONS = Options(*LAYER_OPTIONS, *SHARED_OPTIONS,
                  Option("decoder_units", None, "size of the decoded target (null: the input "
                         "size)", kind="int", low=1),
                  Option("feedback_units", 0, "n' > 0: feedback input from a higher layer",
                         low=0),
                  checks=CHECKS)
"""The checked arguments of `RSMCell` (its initialisers, flags and seed are Keras's own)."""
