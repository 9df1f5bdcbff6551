"""pagi-rsm: sparse, biologically inspired sequence memory for TensorFlow 2 / Keras 3."""
from setuptools import find_packages, setup


def _mapped(top, pkg):
    """Packages below folder `top`, installed under the dotted name `pkg`."""
    return [pkg] + [f"{pkg}.{p}" for p in find_packages(top)]


setup(
    name="pagi-rsm",
    version="0.2.0",
    description="Recurrent Sparse Memory, k-winners, sparse weights and fast weights for Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=(find_packages(include=["pagi_rsm", "pagi_rsm.*"])
              + _mapped("components", "pagi_rsm.components")
              + _mapped("workflows", "pagi_rsm.workflows")
              + ["pagi_rsm.data", "pagi_rsm.definition_files"]),
    package_dir={
        "pagi_rsm.components": "components",
        "pagi_rsm.workflows": "workflows",
        # definitions/ (YAML) ships as a resource package: `pagi list` and
        # `pagi run --definition=grammar/embedded_reber` find them in any installation.
        "pagi_rsm.definition_files": "definitions",
    },
    include_package_data=False,
    package_data={"pagi_rsm.data": ["*.npz", "*.md"],
                  "pagi_rsm.definition_files": ["*/*.yaml", "*/*.json", "*/*.cfg"]},
    install_requires=[
        "tensorflow>=2.16",
        "numpy",
        "absl-py",
        "tensorflow-datasets",
        "pyyaml",
        # TF's CPU wheels do not always pull TensorBoard in, and tf.summary needs it.
        "tensorboard",
        # tensorflow-datasets imports it but does not declare it on every Python.
        "importlib_resources",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["pagi = pagi_rsm.cli:main"]},
)
