"""The hparams of `StreamLSTM` (the image-sequence LSTM baseline), declared once.

docs/image_sequence.md explains the baseline; docs/options.md lists the options.
"""
from pagi_rsm.options import REQUIRED, Option, Options

OPTIONS = Options(
    Option("units", 450, "LSTM units", low=1),
    Option("input_dim", REQUIRED, "D, size of an input step", kind="int", low=1),
    Option("num_classes", REQUIRED, "K, number of label classes", kind="int", low=1),
    Option("batch_size", 300, "B, the number of streams (the global batch)", low=1),
    Option("learning_rate", 1e-3, "Adam's learning rate", low=0, low_open=True),
    Option("accuracy_window", 2000, "predictions in the window of test_state_accuracy", low=1),
)
