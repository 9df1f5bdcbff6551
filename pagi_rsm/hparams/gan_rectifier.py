"""The hparams of `GANRectifier` (the bouncing-balls GAN rectifier), declared once.

docs/video.md explains the rectifier; docs/options.md lists the options.
"""
from pagi_rsm.options import Option, Options

OPTIONS = Options(
    Option("frame_shape", [34, 34, 1], "(height, width, channels) of a frame", kind="list",
           items="int"),
    Option("condition_shape", None, "shape of the discriminator's condition (null: the frame "
           "shape; the condition is the prediction)", kind="list", items="int"),
    Option("encoder_filters", [64, 128, 256], "generator encoder Conv2D filters", kind="list",
           items="int"),
    Option("encoder_strides", [1, 2, 1], "generator encoder strides", kind="list", items="int"),
    Option("decoder_filters", [128, 64], "generator decoder Conv2DTranspose filters",
           kind="list", items="int"),
    Option("decoder_strides", [2, 1], "generator decoder strides", kind="list", items="int"),
    Option("kernel_size", 5, "generator kernel size", low=1),
    Option("hidden_units", 128, "discriminator hidden units", low=1),
    Option("condition_units", 128, "discriminator condition units", low=1),
    Option("negative_slope", 0.2, "leaky-ReLU slope", low=0.0),
    Option("init_stddev", 0.02, "standard deviation of the initial kernels", low=0.0),
    Option("mse_weight", 1.0, "weight of the generator's MSE", low=0.0),
    Option("adversarial_weight", 0.0002, "weight of the generator's adversarial loss",
           low=0.0),
    Option("label_smoothing", 0.1, "one-sided label smoothing of the real label", low=0.0,
           high=1.0, high_open=True),
    Option("input_noise_stddev", 0.1, "stddev of the discriminator's input noise", low=0.0),
    Option("generator_learning_rate", 0.0005, "generator Adam learning rate", low=0.0,
           low_open=True),
    Option("discriminator_learning_rate", 0.0005, "discriminator SGD learning rate", low=0.0,
           low_open=True),
    Option("seed", None, "initialiser seed (null: random)", kind="int"),
)
