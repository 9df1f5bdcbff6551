"""Keep the weights of the best validation score, in a checkpoint, and stop at a target."""
import math

import tensorflow as tf

from pagi_rsm.callbacks.stop_at_target import MODES, TargetStop
from pagi_rsm.checks import check_int


class BestWeights:
    """A copy of a model's weights at its best score so far, held in variables.

    The best score, the batch it was measured at and one variable per model weight are
    checkpointable (`checkpoint_items`): put them in the run's `tf.train.Checkpoint` and a run
    resumed from it continues with the best weights found before it was interrupted. Create it
    under the model's distribution strategy scope, before the checkpoint is restored.

    Args:
      model: a built Keras model.
      mode: "min" if a lower score is better (an error), "max" if higher is better.

    Attributes:
      score: the best score (a Python float; +inf / -inf before any).
      batch: the batch it was measured at (-1 before any).
    """

    def __init__(self, model, mode="min"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        worst = math.inf if mode == "min" else -math.inf
        self._score = tf.Variable(worst, dtype=tf.float64, trainable=False, name="best_score")
        self._batch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_batch")
        self._copies = {}
        for w in model.weights:
            key = w.path.replace("/", ".")
            if key in self._copies:
                raise RuntimeError(f"weight path {w.path!r} of the model is not unique")
            self._copies[key] = tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False,
                                            name=f"best_{key}")

    @property
    def score(self):
        return float(self._score.numpy())

    @property
    def batch(self):
        return int(self._batch.numpy())

    def checkpoint_items(self):
        """A trackable dict for a `tf.train.Checkpoint`: score, batch and the weight copies."""
        return {"score": self._score, "batch": self._batch, "weights": dict(self._copies)}

    def better(self, score):
        """True if `score` is strictly better than the best so far (a NaN never is)."""
        if math.isnan(score):
            return False
        return score < self.score if self.mode == "min" else score > self.score

    def offer(self, score, batch, model):
        """Keeps `model`'s weights if `score` is better than the best; returns True if so."""
        if not self.better(score):
            return False
        self._score.assign(score)
        self._batch.assign(batch)
        for w in model.weights:
            self._copies[w.path.replace("/", ".")].assign(w.value)
        return True

    def restore_into(self, model):
        """Sets `model`'s weights to the best ones; returns False (and changes nothing) if no
        score has been offered yet."""
        if self.batch < 0:
            return False
        for w in model.weights:
            w.assign(self._copies[w.path.replace("/", ".")])
        return True


class ValidationMonitor(TargetStop):
    """Every `interval` batches: a validation score, the best weights kept, a stop at a target.

    After every `interval`-th batch of the run (as counted by `clock`), and when training ends
    between two of them, the callback computes ``score_fn(model)``, writes it as the scalar
    ``validation/<name>`` at the run's batch, offers the weights to `best` (a `BestWeights`), and
    stops the run (`TargetStop.stop`) once the score reaches `target` (<= in mode "min", >= in
    "max"). Put it before the run's checkpoint saver in the callback list, so a checkpoint taken
    at that batch holds the best weights as they are after this score.

    Args:
      best: the run's `BestWeights` (checkpointed).
      score_fn: callable(model) -> float.
      interval: batches between scores; >= 1.
      clock: the run's `RunClock`.
      name: the score's name (tag ``validation/<name>``).
      target: stop once the score reaches this; None: never.
      writer: optional `tf.summary` writer.
      log: optional callable(str) for a line per score.

    Attributes:
      history: (batch, score) of every score computed in this process.
    """

    def __init__(self, best, score_fn, interval, clock, name="error", target=None, writer=None,
                 log=None):
        super().__init__(clock)
        check_int("interval", interval, 1)
        if target is not None and (isinstance(target, bool) or not isinstance(
                target, (int, float)) or not math.isfinite(target)):
            raise ValueError(f"target must be None or a finite number, got {target!r}")
        self.best = best
        self.score_fn = score_fn
        self.interval = interval
        self.name = name
        self.target = target
        self.writer = writer
        self.log = log
        self.history = []
        self._scored_batch = None

    def score(self):
        """Scores the model now (at the clock's batch); returns the score."""
        batch = self.clock.batch
        value = float(self.score_fn(self.model))
        self._scored_batch = batch
        self.history.append((batch, value))
        improved = self.best.offer(value, batch, self.model)
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.scalar(f"validation/{self.name}", value, step=batch)
        if self.log is not None:
            self.log(f"batch {batch}: validation {self.name} {value:.4f}"
                     + (" (best so far)" if improved else f" (best {self.best.score:.4f} at "
                                                        f"batch {self.best.batch})"))
        if self.target is None or self.reached:
            return value
        if value <= self.target if self.best.mode == "min" else value >= self.target:
            self.stop(value, f"validation {self.name} reached {value:.4f} "
                             f"({'<=' if self.best.mode == 'min' else '>='} {self.target:g}) "
                             f"at batch {batch}")
        return value

    def on_train_batch_end(self, batch, logs=None):
        if self.clock.batch % self.interval == 0:
            self.score()

    def on_train_end(self, logs=None):
        if self.clock.batch > 0 and self._scored_batch != self.clock.batch:
            self.score()

