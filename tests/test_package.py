"""The package: lazy names for the pagi command, eager registration for Python users."""
import subprocess
import sys
import warnings

import pagi_rsm
from pagi_rsm import layers


def test_the_static_layer_names_are_the_layers():
    assert set(pagi_rsm._LAYER_NAMES) == set(layers.__all__) | {"FastWeightsRNNLN"}


def test_the_pagi_command_resolves_every_workflow_without_tensorflow():
    """`pagi run --workflow=X --help`, `pagi show` and the definition checks of every registered
    workflow need no TensorFlow (it is slow to import and prints native start-up lines)."""
    code = ("import sys; sys.argv = ['pagi']; from pagi_rsm import cli, definitions, registry; "
            "[definitions.resolve(workflow=name, check_component=False) "
            " for name in registry.names('workflow')]; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_python_import_registers_the_layers_for_keras_loading():
    code = ("import pagi_rsm, keras; "
            "print(keras.saving.get_registered_object('pagi_rsm>RSMCell') is pagi_rsm.RSMCell)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-1] == "True"


def test_deprecated_names_warn_and_still_work():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pagi_rsm.FastWeightsRNNLN is pagi_rsm.FastWeightsCell
        cell = pagi_rsm.RSMCell(groups=4, cells_per_group=2, sparsity=2, boost_factor=0.5)
    assert cell.active_groups == 2 and cell.boost_strength == 0.5
    assert sum(issubclass(w.category, DeprecationWarning) for w in caught) >= 3
