"""The hparams of `ContinualClassifier` (the continual-learning MLP / CNN), declared once.

docs/continual.md explains the models; docs/options.md lists the options.
"""
from pagi_rsm.options import Option, Options

ARCHITECTURES = ("mlp", "cnn")
"""Values of `architecture`."""

OPTIMIZERS = ("sgd", "adam")
"""Values of `optimizer`."""


def _inference_fraction(values):
    for name in ("percent_on", "conv_percent_on"):
        product = values[name] * values["k_inference_factor"]
        if not 0.0 < product < 1.0:
            raise ValueError(f"{name} * k_inference_factor must be in (0, 1), got "
                             f"{values[name]} * {values['k_inference_factor']} = {product}")


def _winners(values):
    if values["sparse"] and int(round(values["hidden_units"] * values["percent_on"])) < 1:
        raise ValueError(f"percent_on * hidden_units must round to at least 1 winner, got "
                         f"{values['percent_on']} * {values['hidden_units']}")


def _layers(values):
    if values["architecture"] == "mlp" and values["hidden_layers"] < 1:
        raise ValueError("hidden_layers must be >= 1 for architecture mlp, got "
                         f"{values['hidden_layers']}")


OPTIONS = Options(
    Option("architecture", "mlp", "mlp, or cnn (conv 64 5x5, conv 128 5x5, 2x2 pooling, FC)",
           choices=ARCHITECTURES),
    Option("hidden_units", 2000, "units of each fully connected hidden layer", low=1),
    Option("hidden_layers", 1, "fully connected hidden layers (the CNN may have 0)", low=0),
    Option("conv_filters", [64, 128], "filters of the CNN's conv layers", kind="list",
           items="int", low=1),
    Option("kernel_size", 5, "size of the CNN's conv kernels", low=1),
    Option("dropout", 0.0, "dropout rate after each FC hidden layer", low=0.0, high=1.0,
           high_open=True),
    Option("sparse", False, "k-winners activations (and sparse weights if their sparsity > 0) "
           "instead of ReLU"),
    Option("percent_on", 0.1, "fraction of FC units that win (sparse)", low=0.0, high=1.0,
           low_open=True, high_open=True),
    Option("conv_percent_on", 0.1, "fraction of channels that win at each position (sparse "
           "CNN)", low=0.0, high=1.0, low_open=True, high_open=True),
    Option("k_inference_factor", 1.5, "k is multiplied by this at test time", low=0.0,
           low_open=True),
    Option("boost_strength", 0.0, "initial k-winners boost strength (0: no boosting)",
           low=0.0),
    Option("boost_strength_factor", 0.9, "boost strength decay per epoch", low=0.0, high=1.0),
    Option("duty_cycle_period", 1000, "duty-cycle averaging period in samples", low=1),
    Option("weight_sparsity", 0.0, "fraction of zero weights of the FC hidden layers (sparse)",
           low=0.0, high=1.0, high_open=True),
    Option("conv_weight_sparsity", 0.0, "fraction of zero weights of the conv layers (sparse)",
           low=0.0, high=1.0, high_open=True),
    Option("optimizer", "sgd", "sgd (learning_rate, momentum, nesterov) or adam "
           "(learning_rate; Keras defaults otherwise)", choices=OPTIMIZERS),
    Option("learning_rate", 0.1, "learning rate of the optimizer", low=0.0, low_open=True),
    Option("momentum", 0.9, "SGD momentum", low=0.0, high=1.0, high_open=True),
    Option("nesterov", True, "Nesterov momentum (SGD)"),
    Option("weight_decay", 1e-4, "L2 coefficient with PyTorch's coupled weight_decay semantics "
           "(gradient + weight_decay * w), with either optimizer", low=0.0),
    Option("num_heads", 1, "output heads (the continual workflow derives it)", low=1),
    Option("classes_per_head", 10, "output units of each head (derived by the workflow)",
           low=2),
    Option("input_shape", [28, 28, 1], "[height, width, channels] of the images (derived by "
           "the workflow)", kind="list", items="int", low=1, length=3),
    checks=(_inference_fraction, _winners, _layers),
)
