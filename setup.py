"""pagi-rsm: sparse, biologically inspired sequence memory for TensorFlow 2 / Keras 3."""
from setuptools import find_packages, setup


def _mapped(top, pkg):
    """Packages below folder `top`, installed under the dotted name `pkg`."""
    return [pkg] + [f"{pkg}.{p}" for p in find_packages(top)]


setup(
    name="pagi-rsm",
    version="0.1.0",
    description="Recurrent Sparse Memory, k-winners, sparse weights and fast weights for Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=(find_packages(include=["pagi_rsm", "pagi_rsm.*"])
              + _mapped("components", "pagi_rsm.components")
              + _mapped("workflows", "pagi_rsm.workflows")),
    package_dir={
        "pagi_rsm.components": "components",
        "pagi_rsm.workflows": "workflows",
    },
    include_package_data=True,
    package_data={"pagi_rsm": ["data/*", "definitions/**/*"]},
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
