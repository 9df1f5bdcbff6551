"""The video workflow's checks, registry entries and the frozen-memory errors."""
import types

import pytest

from pagi_rsm import definitions, registry
from pagi_rsm.workflows.video import PAPER_HPARAMS, VideoWorkflow


def _config(phase="chain", prime=50, steps=150, **hparams):
    options = {name: option.default for name, option in VideoWorkflow.options.items()}
    options.update(phase=phase, prime=prime, steps=steps)
    return types.SimpleNamespace(workflow_options=options, hparams=dict(PAPER_HPARAMS, **hparams))


def test_paper_config_passes():
    VideoWorkflow.check_options(_config())


@pytest.mark.parametrize("config, match", [
    (_config(active_groups=[3, 200]), r"active_groups\[1\] = 200 is more than groups\[1\]"),
    (_config(kernel_size=[40, 3]), r"kernel_size\[0\] = 40: the receptive field is larger"),
    (_config(kernel_size=[5, 12]), r"kernel_size\[1\] = 12: the receptive field is larger"),
    (_config(phase="gan"), "rsm_checkpoint must name"),
    (_config(prime=1), "prime"),
])
def test_clear_errors(config, match):
    with pytest.raises(ValueError, match=match):
        VideoWorkflow.check_options(config)


@pytest.mark.parametrize("name", ["rsm", "gan", "test", "chain_paper", "chain_cpu"])
def test_every_video_definition_has_the_paper_memory(name):
    """The shipped definitions repeat PAPER_HPARAMS (only the batch size may differ): γ = 0,
    recurrent keep rate 0.5, a sigmoid layer-1 decoder and all biases, not the stack's
    defaults."""
    [config] = definitions.resolve(definitions.load(f"video/{name}"))
    for key, value in PAPER_HPARAMS.items():
        if key != "batch_size":
            assert config.hparams[key] == value, (name, key, config.hparams[key])
    assert config.hparams["decoder_activation"] == ["sigmoid", None]
    assert config.hparams["recurrent_keep_rate"] == [0.5]


def test_registered():
    assert registry.lookup("workflow", "video") is VideoWorkflow
    assert registry.lookup("component", "gan_rectifier").__name__ == "GANRectifier"
    assert registry.lookup("dataset", "bouncing_balls").__name__ == \
        "make_bouncing_balls_dataset"
    assert "encoder_filters" in registry.options("component", "gan_rectifier").names()


class _FakeStream:
    def __init__(self):
        import tensorflow as tf
        self.value = tf.Variable(0.0)

    def write(self, values):
        self.value.assign_add(1.0)


class _FakeMemory:
    """unroll returns the previous frame as the prediction of frame t (copy-last)."""
    trainable = True

    def __init__(self):
        self.stream_states = [_FakeStream()]

    def unroll(self, data, training=False):
        import tensorflow as tf
        x = data["inputs"]
        previous = tf.concat([tf.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
        return {"decoding_0": previous}, [None]


def test_frozen_memory_gan_trains_the_rectifier_only():
    import numpy as np
    from pagi_rsm.components.frozen_memory_gan import FrozenMemoryGAN
    from pagi_rsm.components.gan_rectifier import GANRectifier
    memory = _FakeMemory()
    rectifier = GANRectifier(frame_shape=(8, 8, 1), encoder_filters=(4, 4, 4),
                             decoder_filters=(4, 4), kernel_size=3, hidden_units=4,
                             condition_units=4, seed=1)
    model = FrozenMemoryGAN(memory, rectifier)
    model.compile()
    data = {"inputs": np.random.default_rng(0).uniform(0, 1, (2, 3, 8, 8, 1)).astype("float32"),
            "reset": np.zeros((2, 3), "float32")}
    before = [w.numpy().copy() for w in rectifier.generator.weights]
    logs = model.train_on_batch(data, return_dict=True)
    assert memory.trainable is False
    assert memory.stream_states[0].value.numpy() == 1.0     # the stream state moved on
    assert all(np.isfinite(v) for v in logs.values())
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before,
                                                                rectifier.generator.weights))
    assert "rectifier" in model.checkpoint_items()
