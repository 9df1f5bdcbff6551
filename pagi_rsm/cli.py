"""The `pagi` command: run, show and list pagi-rsm experiments.

    pagi run --workflow=grammar                       # the main job: embedded Reber grammar
    pagi run --definition=definitions/grammar/embedded_reber.yaml --batches=2000
    pagi show --definition=FILE --hparams_override='{cells_per_group: 4}'
    pagi list

Options come from three places; later ones win: the classes' defaults, the definition file,
the flags. `pagi show` prints the result without running anything. A bad definition (unknown
key, wrong type, missing file, unknown workflow) prints one error line naming the file, the key
and the accepted keys, and exits with status 2 before anything starts.

Exit status: 0 success (batch limit or target reached), 2 bad definition or flags, 3 a loss
became NaN (the last good checkpoint is kept), 4 the dataset ended early, 5 stopped by SIGTERM or
SIGINT (the checkpoint of the last batch is saved; the same command resumes).
"""
import logging as py_logging
import os
import sys
import textwrap

from absl import flags
from absl import logging

from pagi_rsm import definitions
from pagi_rsm import registry

FLAGS = flags.FlagValues()

flags.DEFINE_string("definition", None,
                    "Experiment definition: a YAML/JSON file, or the name of a shipped one "
                    "(see `pagi list`, e.g. grammar/embedded_reber). Optional: without it the "
                    "workflow's defaults are used.", flag_values=FLAGS)
flags.DEFINE_string("hparams_override", None,
                    "Component hyperparameters as a YAML/JSON mapping, e.g. "
                    "'{cells_per_group: 4, inhibition_decay: 0.9}'. Overrides the file.",
                    flag_values=FLAGS)
flags.DEFINE_string("workflow_options", None,
                    "Workflow options as a YAML/JSON mapping, e.g. '{checkpoint_interval: 200}'. "
                    "Overrides the file.", flag_values=FLAGS)


def _define_experiment_flag(option):
    """One flag per experiment option declared with ``flag=True`` (default None: "not given")."""
    text = option.help[:1].upper() + option.help[1:] + "."
    if option.kind == "bool":
        flags.DEFINE_boolean(option.name, None, text, flag_values=FLAGS)
    elif option.choices:
        flags.DEFINE_enum(option.name, None, [c for c in option.choices if c is not None],
                          text, flag_values=FLAGS)
    elif option.kind == "int":
        flags.DEFINE_integer(option.name, None, text, lower_bound=option.low,
                             flag_values=FLAGS)
    else:
        flags.DEFINE_string(option.name, None, text, flag_values=FLAGS)


EXPERIMENT_FLAGS = tuple(o.name for o in definitions.EXPERIMENT_OPTIONS.values() if o.flag)
for _option in definitions.EXPERIMENT_OPTIONS.values():
    if _option.flag:
        _define_experiment_flag(_option)
flags.DEFINE_integer("logical_cpus", 0,
                     "Split the CPU into this many logical devices (to try "
                     "--distribution=mirrored on a machine without GPUs). 0 = leave as is.",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_enum("verbosity", "info", ["debug", "info", "warning", "error"],
                  "How much the run logs (absl logging). debug also shows TensorFlow's own "
                  "C++ log lines (as does setting TF_CPP_MIN_LOG_LEVEL yourself).",
                  flag_values=FLAGS)

SHOW_FLAGS = ("definition", "workflow", "hparams_override", "workflow_options") + tuple(
    f for f in EXPERIMENT_FLAGS if f != "workflow")
RUN_FLAGS = SHOW_FLAGS + ("logical_cpus", "verbosity")

EXIT_OK, EXIT_USAGE = 0, 2

MAIN_HELP = """\
pagi - run pagi-rsm experiments: Recurrent Sparse Memory, k-winners, fast weights.

Usage:
  pagi run  [--workflow=NAME] [--definition=FILE] [flags]   train one experiment (or a sweep)
  pagi show [--workflow=NAME] [--definition=FILE] [flags]   print the resolved options; run nothing
  pagi list                                   workflows, components, datasets, definitions

The main job (embedded Reber grammar, the paper's values, no download needed):
  pagi run --workflow=grammar

Watch any run in TensorBoard (scalars, images, histograms, HParams, the definition):
  tensorboard --logdir runs --host 127.0.0.1

`pagi run --help` lists the flags of a run; `pagi run --workflow=NAME --help` adds the
workflow's options and its component's hyperparameters (also in docs/options.md)."""

RUN_HELP = """\
pagi run - train a workflow on its dataset and component, with summaries and checkpoints.

Usage:
  pagi run --workflow=NAME [--definition=FILE] [flags]
  pagi run --definition=FILE [flags]          (the file names the workflow)

Where options come from (later wins): the classes' defaults < the definition file <
a parameter-sweeps combination < these flags. See them with `pagi show` first.

Examples:
  pagi run --workflow=grammar
  pagi run --definition=grammar/embedded_reber --batches=500 --seed=3
  pagi run --workflow=grammar --hparams_override='{cells_per_group: 4}' --summary_dir=runs/c4
  pagi run --workflow=grammar --checkpoint=runs/c4/checkpoints     (resume after a kill)

A run writes to its summary directory: TensorBoard events, results.json, definition.yaml,
and checkpoints/ (every checkpoint_interval batches). A definition with parameter-sweeps runs
each combination in its own sub-directory (trial_000, trial_001, ...).

Exit status: 0 done, 2 bad definition or flags (nothing started), 3 a loss became NaN,
4 the dataset ended early, 5 stopped by SIGTERM or Ctrl-C after saving a checkpoint (run the
same command again to resume; a second signal stops at once).

Flags:"""

SHOW_HELP = """\
pagi show - print the fully resolved options (defaults < file < flags) as a definition; runs
nothing. The output is itself a valid definition file.

Usage:
  pagi show --workflow=NAME [--definition=FILE] [flags]

Flags:"""

LIST_HELP = """\
pagi list - the registered workflows, components and datasets, and the shipped definitions,
one line each.

Usage:
  pagi list"""


def _flag_help(names):
    lines = []
    for name in names:
        flag = FLAGS[name]
        default = "" if flag.default is None else f" (default: {flag.default})"
        lines.append(f"  --{name}")
        if flag.flag_type() == "bool":
            lines[-1] = f"  --[no]{name}"
        elif hasattr(flag.parser, "enum_values") and flag.parser.enum_values:
            lines[-1] += "=" + "|".join(flag.parser.enum_values)
        text = flag.help
        if text.startswith("<") and ">: " in text:  # absl prefixes enum help with the choices
            text = text.split(">: ", 1)[1]
        lines.extend(textwrap.wrap(text + default, width=92, initial_indent="      ",
                                   subsequent_indent="      "))
    return "\n".join(lines)


def _options_help(argv):
    """The workflow's options and its component's hparams, when --workflow or --definition
    names them (read from the declarations: nothing heavy is imported)."""
    values = {}
    for arg in argv:
        for name in ("workflow", "definition"):
            if arg.startswith(f"--{name}="):
                values[name] = arg.split("=", 1)[1]
    try:
        [config] = definitions.resolve(
            definitions.load(values["definition"]) if "definition" in values else None,
            source=values.get("definition"), workflow=values.get("workflow"),
            check_component=False)[:1]
    except (KeyError, definitions.DefinitionError, registry.NameNotFoundError, ValueError):
        return ""
    lines = [f"\nWorkflow options of {config.workflow} (--workflow_options='{{name: value}}'):"]
    lines += config.workflow_class.options.help_lines()
    component = definitions.component_options(config.experiment["component"])
    if component is not None:
        lines.append(f"\nHyperparameters of {config.experiment['component']} "
                     f"(--hparams_override='{{name: value}}'):")
        lines += component.help_lines()
    return "\n".join(lines)


def help_text(command=None, argv=()):
    """The help shown by `pagi --help` or `pagi <command> --help`."""
    if command == "run":
        return RUN_HELP + "\n" + _flag_help(RUN_FLAGS) + _options_help(argv)
    if command == "show":
        return SHOW_HELP + "\n" + _flag_help(SHOW_FLAGS) + _options_help(argv)
    if command == "list":
        return LIST_HELP
    return MAIN_HELP


class _QuietTensorFlow(py_logging.Filter):
    """Drops TensorFlow's own INFO records (they tell a newcomer nothing)."""

    def filter(self, record):
        return record.levelno >= py_logging.WARNING or (
            f"{os.sep}tensorflow{os.sep}" not in record.pathname
            and f"{os.sep}keras{os.sep}" not in record.pathname)


class UsageError(Exception):
    """Bad command-line usage (exit status 2)."""


def _error(message):
    print(f"pagi: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _resolve_from_flags(check_component=True):
    definition, source = None, None
    if FLAGS.definition:
        definition = definitions.load(FLAGS.definition)
        source = FLAGS.definition
    experiment = {name: FLAGS[name].value for name in EXPERIMENT_FLAGS
                  if FLAGS[name].value is not None and name != "workflow"}
    return definitions.resolve(
        definition, source=source, workflow=FLAGS.workflow, experiment_overrides=experiment,
        hparams_overrides=definitions.parse_override(FLAGS.hparams_override,
                                                     "--hparams_override"),
        workflow_option_overrides=definitions.parse_override(FLAGS.workflow_options,
                                                             "--workflow_options"),
        check_component=check_component)


def _requested_distribution():
    """--distribution, else the definition file's (read without starting TensorFlow)."""
    if FLAGS.distribution:
        return FLAGS.distribution
    if FLAGS.definition:
        return definitions.load(FLAGS.definition)["experiment-options"].get("distribution")
    return None


def command_list():
    kinds = {"workflow": "Workflows (pagi run --workflow=NAME)",
             "component": "Components (experiment-options.component)",
             "dataset": "Datasets (experiment-options.dataset)"}
    entries = registry.describe()
    width = max((len(name) for _, name, _ in entries), default=10) + 2
    for kind in registry.KINDS:
        print(kinds[kind] + ":")
        for k, name, purpose in entries:
            if k == kind:
                print(f"  {name.ljust(width)}{purpose}")
        print()
    shipped = definitions.shipped()
    print("Definitions (pagi run --definition=NAME):")
    width = max((len(name) for name, _ in shipped), default=10) + 2
    for name, description in shipped:
        print(f"  {name.ljust(width)}{description}")
    print()
    print("Your own classes work too: give a dotted path, e.g. "
          "--workflow=my_project.workflows.MyWorkflow")
    return EXIT_OK


def command_show():
    # The declarations check every value; constructing the component (TensorFlow) is left to
    # `pagi run`, so that show answers at once.
    configs = _resolve_from_flags(check_component=False)
    for config in configs:
        if config.trial is not None:
            print(f"# {config.trial}: {config.trial_values}")
        else:
            file = "" if config.source == "<defaults>" else f" < {config.source}"
            print(f"# resolved from: class defaults{file} < flags")
        print(config.to_yaml())
    if len(configs) > 1:
        print(f"# parameter sweep: {len(configs)} runs")
    return EXIT_OK


def command_run():
    from pagi_rsm import runtime
    if FLAGS.verbosity != "debug" and os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3":
        runtime.import_tensorflow_quietly()
    if FLAGS.logical_cpus:  # before anything initialises TensorFlow's runtime
        try:
            runtime.configure_logical_cpus(FLAGS.logical_cpus)
        except ValueError as e:
            raise UsageError(f"--logical_cpus: {e}") from None
    if _requested_distribution() == "multi_worker":
        # MultiWorkerMirroredStrategy must exist before TensorFlow's runtime starts.
        try:
            runtime.make_strategy("multi_worker")
        except ValueError as e:
            raise UsageError(str(e)) from None
    configs = _resolve_from_flags()  # raises DefinitionError before anything starts
    from pagi_rsm.workflows.workflow import STATUS_EXIT_CODES, run_all
    results = run_all(configs)
    return max(STATUS_EXIT_CODES.get(r["status"], 1) for r in results)


COMMANDS = {"run": command_run, "show": command_show, "list": command_list}


def main(argv=None):
    """Entry point of the `pagi` console script. Returns the exit status."""
    argv = list(sys.argv if argv is None else argv)
    args = argv[1:]
    command = next((a for a in args if not a.startswith("-")), None)
    if any(a in ("-h", "--help", "-help", "--helpfull", "--helpshort") for a in args):
        if command is not None and command not in COMMANDS:
            return _error(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
        print(help_text(command, args))
        return EXIT_OK
    if FLAGS.is_parsed():  # main() called again in one process (tests)
        FLAGS.unparse_flags()
    try:
        rest = FLAGS([argv[0]] + args)
    except flags.Error as e:
        return _error(f"{e}\nSee `pagi {command or ''} --help`.".replace("  ", " "))
    positional = rest[1:]
    if not positional:
        print(help_text(), file=sys.stderr)
        return EXIT_USAGE
    command = positional[0]
    if command not in COMMANDS:
        return _error(f"unknown command {command!r}; commands: {', '.join(COMMANDS)} "
                      f"(see pagi --help)")
    if len(positional) > 1:
        return _error(f"unexpected argument(s) {' '.join(positional[1:])!r}; options are "
                      f"flags such as --batches=100 (see pagi {command} --help)")
    if not flags.FLAGS.is_parsed():  # absl's own flags (logging): defaults
        flags.FLAGS([argv[0]])
    if FLAGS.verbosity != "debug":
        # TensorFlow's C++ start-up lines (CUDA probing on a CPU machine, CPU features, graph
        # rewrites) tell a user nothing; TF_CPP_MIN_LOG_LEVEL set by the user wins (and then
        # `pagi run` imports TensorFlow without hiding anything).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(FLAGS.verbosity)
    logging.use_absl_handler()
    if FLAGS.verbosity != "debug":  # TensorFlow logs chatty INFO lines (checkpoint sharding)
        handler = logging.get_absl_handler()
        if not any(isinstance(f, _QuietTensorFlow) for f in handler.filters):
            handler.addFilter(_QuietTensorFlow())
    try:
        return COMMANDS[command]()
    except definitions.DefinitionError as e:
        return _error(str(e))
    except (registry.NameNotFoundError, UsageError) as e:
        return _error(str(e))


if __name__ == "__main__":
    sys.exit(main())
