"""docs/options.md, made from the declarations: every option of every registered part.

tests/test_options_reference.py fails when docs/options.md differs from `markdown()`; it then
says how to write it again (`write()`).
"""
import os

from pagi_rsm import definitions
from pagi_rsm import registry

HEADER = """# Options reference

Made from the option declarations (`pagi_rsm.options`); do not edit by hand. After changing a
declaration, write it again with
`python -c "from pagi_rsm import options_reference; options_reference.write()"`
(tests/test_options_reference.py checks that it is current).

A definition sets experiment options under `experiment-options`, workflow options under
`workflow-options` and component hyperparameters under `experiment-options.hparams_override`;
flags override the file (`pagi run --help`). Names in parentheses are accepted too: the original
pagi names and this project's earlier names, translated to the name in front.
"""


def _section(title, options):
    return f"## {title}\n\n{options.markdown()}\n"


def markdown():
    """The whole reference page as markdown."""
    parts = [HEADER, _section("Experiment options", definitions.EXPERIMENT_OPTIONS)]
    for name in registry.names("workflow"):
        workflow = registry.lookup("workflow", name)
        parts.append(_section(f"Workflow `{name}`: workflow-options", workflow.options))
    for name in registry.names("component"):
        options = definitions.component_options(name)
        if options is not None:
            parts.append(_section(f"Component `{name}`: hparams_override", options))
    from pagi_rsm.hparams import rsm_cell
    parts.append(_section("Layer `RSMCell`: checked arguments", rsm_cell.OPTIONS))
    return "\n".join(parts)


def default_path():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "options.md")


def write(path=None):
    """Writes `markdown()` to docs/options.md of the checkout (or `path`)."""
    with open(path or default_path(), "w", encoding="utf-8") as f:
        f.write(markdown())
