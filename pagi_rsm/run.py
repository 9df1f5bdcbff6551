"""`load_run`: a finished (or interrupted) run's options and trained component, in one call.

Every run writes, in its summary directory, the resolved definition (``definition.yaml``),
``results.json`` when it ends, ``model.keras`` (the trained component) and its checkpoints (by
default in ``checkpoints/``). `load_run` reads the definition, builds the component exactly as
the workflow did and restores the latest checkpoint into it: the weights, the optimizer state
and the stream state (a stream component continues where training left off).

For example, after the README's main job
(`pagi run --workflow=grammar --summary_dir=runs/grammar-main`):

```python
import pagi_rsm
run = pagi_rsm.load_run("runs/grammar-main")
run.config.hparams["groups"], run.batch    # ([200], 5000)
run.model                                  # the SequenceMemoryStack, trained
```
"""
import dataclasses
import json
import os

__all__ = ["LoadedRun", "load_run"]


@dataclasses.dataclass
class LoadedRun:
    """What `load_run` returns.

    Attributes:
      config: the run's resolved `pagi_rsm.definitions.RunConfig` (``config.as_definition()``
        is the definition as a dict; ``config.hparams`` the component's hyperparameters).
      model: the component, built and compiled, restored from the latest checkpoint.
      workflow: the run's `Workflow` object (its `build_dataset(start_batch)` gives the run's
        data from any batch).
      batch: the batches trained at the latest checkpoint.
      checkpoint: the path of that checkpoint.
      summary_dir, checkpoint_dir: the run's directories.
      results: the run's results.json as a dict, or None (a run that did not finish).
    """
    config: object
    model: object
    workflow: object
    batch: int
    checkpoint: str
    summary_dir: str
    checkpoint_dir: str
    results: dict = None


def load_run(summary_dir, checkpoint_dir=None):
    """Loads a run from its summary directory: resolved options and the trained component.

    Args:
      summary_dir: the run's summary directory (``--summary_dir``; a sweep trial's
        ``<sweep>/trial_NNN``).
      checkpoint_dir: its checkpoint directory; default: the one in results.json, else the one
        the run's options give (``checkpoint``, else ``<summary_dir>/checkpoints``).

    Returns:
      A `LoadedRun`.

    Raises:
      FileNotFoundError: `summary_dir` has no definition.yaml, or there is no checkpoint.
      ValueError: the checkpoint lacks a weight of the component (another version's run).
    """
    import keras
    import tensorflow as tf

    from pagi_rsm import definitions, runtime
    from pagi_rsm.workflows.workflow import (DEFINITION_FILE, RESULTS_FILE, Workflow,
                                             plan_directories)

    path = os.path.join(summary_dir, DEFINITION_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"summary_dir {summary_dir!r} holds no {DEFINITION_FILE}: it is "
                                f"not the summary directory of a pagi run")
    [config] = definitions.resolve(definitions.load(path), source=path)
    results = None
    results_path = os.path.join(summary_dir, RESULTS_FILE)
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
    if checkpoint_dir is None:
        checkpoint_dir = (results or {}).get("checkpoint_dir") or plan_directories(
            config, summary_dir=summary_dir)[1]
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {checkpoint_dir!r} (checkpoint_dir of the run "
                                f"in {summary_dir!r})")
    workflow = config.workflow_class(config, summary_dir=summary_dir,
                                     checkpoint_dir=checkpoint_dir)
    # The steps of Workflow.run that build and restore, without its side effects (no
    # directories, summary writer or seeding). As in `Workflow.setup`, a fresh Keras session
    # gives the layers the names (so the weight paths) they had in the run.
    keras.backend.clear_session()
    workflow.strategy = tf.distribute.get_strategy()
    workflow.jit_compile = runtime.resolve_jit_compile(config.experiment["jit_compile"])
    start = workflow.resume_point()
    model = workflow.build_component(workflow.build_dataset(start_batch=start))
    batch = workflow.restore(model)
    # Workflow.restore tolerates a partial match (a resumed run may add state); here every
    # weight of the component must come from the checkpoint.
    try:
        tf.train.Checkpoint(**Workflow.checkpoint_items(workflow, model)).restore(
            latest).assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"the checkpoint {latest} does not hold every weight of the component "
                         f"that {path} builds (was it written by another version of "
                         f"pagi-rsm?): {e}") from None
    return LoadedRun(config=config, model=model, workflow=workflow, batch=batch,
                     checkpoint=latest, summary_dir=summary_dir, checkpoint_dir=checkpoint_dir,
                     results=results)
