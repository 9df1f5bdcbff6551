"""The hparams of `DeepHTM` (encoder -> spatial pooler -> temporal memory -> decoder), declared
once.

docs/deep_htm.md explains the model; docs/options.md lists the options.
"""
from pagi_rsm.options import Option, Options


def _fewer_winners_than_columns(values):
    if values["active_columns"] >= values["columns"]:
        raise ValueError(f"active_columns must be < columns ({values['columns']}), got "
                         f"{values['active_columns']}")


def _final_rate_within_the_first(values):
    if values["final_learning_rate"] > values["learning_rate"]:
        raise ValueError(f"final_learning_rate must be a number in (0, learning_rate="
                         f"{values['learning_rate']}], got {values['final_learning_rate']}")


OPTIONS = Options(
    Option("input_dim", 1, "D, features per step", low=1),
    Option("encoder_units", [256, 256], "sizes of the encoder's ReLU layers ([] for none)",
           kind="list", items="int", low=1),
    Option("columns", 256, "spatial-pooler columns", low=2),
    Option("active_columns", 5, "k, winning columns per step in training and inference "
           "(exactly k: ties broken by index)", low=1),
    Option("boost_strength", 0.0, "k-winners boosting by duty cycle (0: off)", low=0.0),
    Option("boost_strength_factor", 1.0, "boost strength multiplier per "
           "update_boost_strength call (1: constant)", low=0.0, high=1.0),
    Option("duty_cycle_period", 1000, "duty-cycle averaging period in samples", low=1),
    Option("cells_per_column", 5, "temporal-memory cells per column", low=1),
    Option("sparse_reads", True, "read the k active cells through their rows of the recurrent "
           "and decoder kernels instead of dense matmuls (same numbers)"),
    Option("decoder_units", [256], "sizes of the decoder's ReLU layers before its linear "
           "output", kind="list", items="int", low=1),
    Option("predict_change", False, "the decoder predicts the change x_{t+1} - x_t, added to "
           "the current input (the readout starts at zero: the untrained model is persistence)"),
    Option("bptt_steps", 0, "truncation length of backpropagation through time (0: the whole "
           "window)", low=0),
    Option("streams", 0, "0: every batch starts from the zero state; B > 0: batches are B "
           "continuing streams whose state is kept between batches", low=0),
    Option("learning_rate", 1e-3, "Adam learning rate of compile() without an optimizer",
           low=0.0, low_open=True),
    Option("decay_steps", 0, "cosine decay of the learning rate to final_learning_rate over "
           "this many steps (0: constant)", low=0),
    Option("final_learning_rate", 1e-4, "learning rate at the end of the cosine decay",
           low=0.0, low_open=True),
    checks=(_fewer_winners_than_columns, _final_rate_within_the_first),
)
