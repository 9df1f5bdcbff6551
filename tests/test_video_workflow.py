"""The video workflow's checks, registry entries and the frozen-memory errors."""
import types

import pytest

from pagi_rsm import registry
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


def test_registered():
    assert registry.lookup("workflow", "video") is VideoWorkflow
    assert registry.lookup("component", "gan_rectifier").__name__ == "GANRectifier"
    assert registry.lookup("dataset", "bouncing_balls").__name__ == \
        "make_bouncing_balls_dataset"
    assert "encoder_filters" in registry.options("component", "gan_rectifier").names()
