"""`SequenceMemoryStack`: L RSM layers + predictor, trained by local learning inside `model.fit`.

The algorithm: docs/rsm.md#stack, docs/rsm.md#local-losses, docs/rsm.md#predictor,
docs/rsm.md#duty-cycles, docs/rsm.md#resets, docs/rsm.md#update-schedules.
"""
import collections
import contextlib
import math

import keras
import tensorflow as tf
from keras import ops

from pagi_rsm.checkpointing import model_items
from pagi_rsm.checks import check_int
from pagi_rsm.distribute import replica_sum
from pagi_rsm.hparams.sequence_memory_stack import OPTIONS
from pagi_rsm.layers.conv_rsm import ConvRSM
from pagi_rsm.layers.rsm_cell import RSMCell
from pagi_rsm.metrics.duty_cycle import binary_entropy, max_entropy
from pagi_rsm.metrics.windowed_rate import WindowedRate
from pagi_rsm.models.hparams_config import HparamsConfig
from pagi_rsm.models.stream_state import StreamState
from pagi_rsm.optimizers import FusedAdam
from pagi_rsm.components.predictor import Predictor

_PER_LAYER = [name for name, option in OPTIONS.items() if option.per_layer]
_CELL_ARGS = [k for k in _PER_LAYER if k not in ("pool_size", "kernel_size", "strides")]


def default_hparams():
    """All hparams of the stack with their defaults (per-layer ones as 1-element lists)."""
    return OPTIONS.defaults()


def _per_layer(value, num_layers):
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * num_layers if len(values) == 1 else values


def _input_shape(input_dim, input_shape):
    """The per-sample input shape from the hparams `input_dim` and/or `input_shape`."""
    if input_shape is None:
        if input_dim is None:
            raise ValueError("give hparam 'input_dim' (vector inputs) or 'input_shape' "
                             "([height, width, channels] frames)")
        return (input_dim,)
    if not (isinstance(input_shape, (list, tuple)) and len(input_shape) in (1, 3)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                    for d in input_shape)):
        raise ValueError("hparam 'input_shape' must be [features] or [height, width, channels] "
                         f"of integers >= 1, got {input_shape!r}")
    if input_dim is not None and input_dim != math.prod(input_shape):
        raise ValueError(f"hparams 'input_dim' ({input_dim}) and 'input_shape' ({input_shape}) "
                         "disagree: give one of them")
    return tuple(input_shape)


def _is_conv(kernel_size):
    return kernel_size != -1


def _conv_geometry(kernel_size, strides):
    """(kernel (fh, fw), strides (sh, sw)) of a convolutional layer; strides -1 = the kernel."""
    def pair(name, value):
        values = (value,) * 2 if isinstance(value, int) else value
        if not (isinstance(values, (list, tuple)) and len(values) == 2):
            raise ValueError(f"hparam {name!r} must hold -1, integers >= 1 or pairs of them, "
                             f"got {value!r}")
        return tuple(check_int(f"hparam {name!r}", v, 1) for v in values)

    kernel = pair("kernel_size", kernel_size)
    return kernel, kernel if strides == -1 else pair("strides", strides)


def _layer_shapes(input_shape, units, layer_hp):
    """Per-sample input shape and code shape of every layer, bottom-up.

    A layer with `kernel_size` -1 is fully connected (`RSMCell`): it reads its input flattened
    and its code is [n]; `pool_size` p max-pools groups of p cells. Otherwise it is a `ConvRSM`
    on an [H, W, D] input with code [h, w, n]; p max-pools p×p positions (stride p, SAME).
    """
    inputs, codes = [], []
    shape = tuple(input_shape)
    for l, n in enumerate(units):
        pool = layer_hp["pool_size"][l]
        if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1:
            raise ValueError(f"hparam 'pool_size' must hold integers >= 1, got {pool!r} for "
                             f"layer {l}")
        if _is_conv(layer_hp["kernel_size"][l]):
            if len(shape) != 3:
                raise ValueError(
                    f"layer {l} is convolutional (kernel_size {layer_hp['kernel_size'][l]!r}) "
                    f"and needs an input [height, width, channels], but its input has shape "
                    f"{list(shape)} (set 'input_shape'; no fully connected layer below it)")
            _, (sh, sw) = _conv_geometry(layer_hp["kernel_size"][l], layer_hp["strides"][l])
            code = (math.ceil(shape[0] / sh), math.ceil(shape[1] / sw), n)
            inputs.append(shape)
            shape = (math.ceil(code[0] / pool), math.ceil(code[1] / pool), n)
        else:
            if n % pool:
                raise ValueError(f"hparam 'pool_size' ({pool}) must divide the cells of layer "
                                 f"{l} ({n})")
            code = (n,)
            inputs.append((math.prod(shape),))
            shape = (n // pool,)
        codes.append(code)
    return inputs, codes


class _Step(collections.namedtuple("_Step", ["results", "targets", "predictor_input",
                                             "states"])):
    """One time step of the stack before its heads: per layer the cell's `RSMStep` and the
    decoder's target (the layer's input), the predictor's input and the new states."""


def _step_major(values):
    """[B, T, ...] -> [T·B, ...], the row order of `_heads`."""
    values = ops.convert_to_tensor(values)
    return ops.reshape(ops.swapaxes(values, 0, 1), (-1, *values.shape[2:]))


def _batch_major(rows, steps):
    """[T·B, ...] in step-major order -> [B, T, ...]."""
    return ops.swapaxes(ops.reshape(rows, (steps, -1, *rows.shape[1:])), 0, 1)


def _tape(record):
    """A GradientTape when `record`, else a context that records nothing."""
    return tf.GradientTape() if record else contextlib.nullcontext()


@keras.saving.register_keras_serializable(package="pagi_rsm")
class SequenceMemoryStack(HparamsConfig, keras.Model):
    """A stack of RSM layers with a predictor, trained by local, immediate credit assignment.

    A layer is a fully connected `RSMCell` (per-layer `kernel_size` -1, the default) or a
    `ConvRSM` (`kernel_size` > 0, stride `strides`, -1 = the kernel size; docs/conv_rsm.md);
    convolutional layers need frame inputs (`input_shape` [H, W, D] instead of `input_dim`) and
    come below any fully connected one. `pool_size` p max-pools a convolutional code over p×p
    positions (stride p, SAME) and a fully connected one over groups of p cells. Feedback
    (`connectivity="bi"`) into a convolutional layer is the higher code resized bilinearly to
    its grid. Without `num_classes` there is no predictor (reconstruction only): the data
    need only `inputs` and `reset`, and the losses are the layers' own.

    Data: dicts `{inputs [B, T, D], labels [B, T], reset [B, T], test [B, T]}` where row b is
    always stream b and each batch continues the previous one (see
    `pagi_rsm.datasets.grammar.make_grammar_dataset`). `reset` = 1 zeroes that sample's state
    before the step (a new sequence starts); `test` = 1 marks the steps scored by the
    test-state accuracy.

    Per time step t: layer 1 steps on x_t; layer l+1 on (optionally max-pooled) y^l_t, with
    feedback y^{l+1}_{t−1} into layer l when `connectivity="bi"`; each layer's decoder predicts
    its current input (layer 1: x_t; layer l+1: pool(y^l_t)) and the predictor, on
    stop_gradient of the top layer's code, predicts the label of x_t. Every tensor crossing a
    time step or a layer boundary is `stop_gradient` (BPTT = 1). Each layer minimises its own
    MSE with its own Adam optimiser, the predictor its own cross-entropy with its own Adam
    (lr `learning_rate`, default 5e-4; the predictor's is `predictor_learning_rate` when set,
    as the original's predictor component has its own), all in `train_step`, so `model.fit`
    drives it.

    `update_schedule`:
      - "step": one optimiser update per time step (as the original): the forward pass of step
        t uses the weights updated at step t−1;
      - "chunk": one update per chunk of T steps on the mean of the T per-step losses (weights
        constant within the chunk, an approximation of the original).
    The T steps of a chunk are unrolled in the one compiled graph of the training step.
    "step" is the default (docs/rsm.md#update-schedules has the measurement behind it).

    Stream state (previous input, output, inhibition, traces of every layer, and the
    predictor's input trace when `predictor_input_decay` > 0; the original never clears that
    trace, `predictor_input_reset=True` clears it with the rest at a reset) lives in
    `StreamState` variables: it survives across `fit` batches, is saved with the model's
    checkpoint, and is held per replica under `tf.distribute`.

    Logged metrics: loss, memory_loss, memory_loss_<l>, predictor_loss, accuracy, perplexity
    (exp of the mean ensemble cross-entropy over the epoch), test_state_accuracy (over the last
    `accuracy_window` test-state predictions) and test_state_count, cell_entropy_<l> (entropy
    of the cell duty cycles (win frequencies) over its maximum n·H(k/n)).

    All hparams and their defaults: `default_hparams()`; per-layer ones take a list with one
    value per layer (or one value for all). `input_dim` (or `input_shape`) is required.

    `step(frame, states)` is one pure step for generation (prime on true frames, then feed
    predictions back inside a `tf.while_loop`).
    """

    options = OPTIONS
    """The declared hparams (`pagi_rsm.hparams.sequence_memory_stack.OPTIONS`)."""

    def __init__(self, **hparams):
        name = hparams.pop("name", "sequence_memory_stack")
        for key in ("trainable", "dtype"):
            hparams.pop(key, None)
        hparams = {OPTIONS.canonical(k) or k: v for k, v in hparams.items()}
        unknown = sorted(k for k in hparams if k not in OPTIONS)
        if unknown:
            raise ValueError(f"unknown hparam(s) {unknown}; accepted: {OPTIONS.names()}")
        super().__init__(name=name)
        hp = OPTIONS.resolve([("", hparams)])
        self.hparams = hp
        input_shape = _input_shape(hp["input_dim"], hp["input_shape"])
        self.frame_shape = input_shape
        num_layers = hp["num_layers"]
        self.memory_interval = hp["memory_training_interval"]
        self.predictor_interval = hp["predictor_training_interval"]
        layer_hp = {k: _per_layer(hp[k], num_layers) for k in _PER_LAYER}
        self.layer_hparams = layer_hp
        self.num_layers = num_layers
        self.update_schedule = hp["update_schedule"]

        # ---- layers, bottom-up
        units = [g * c for g, c in zip(layer_hp["groups"], layer_hp["cells_per_group"])]
        self.input_shapes, self.code_shapes = _layer_shapes(input_shape, units, layer_hp)
        self.cells, self.stream_states = [], []
        for l in range(num_layers):
            above = hp["connectivity"] == "bi" and l + 1 < num_layers
            try:
                cell = self._make_layer(l, hp, self.code_shapes[l + 1] if above else None)
            except ValueError as e:
                raise ValueError(f"layer {l}: {e}") from None
            self.cells.append(cell)
            self.stream_states.append(
                StreamState(hp["batch_size"], cell.state_size, name=f"streams_{l}"))
        self.input_dims = [math.prod(shape) for shape in self.input_shapes]
        top = math.prod(self.code_shapes[num_layers - 1])
        self.predictor = None
        if hp["num_classes"] is not None:
            self.predictor = Predictor(
                hp["num_classes"], hidden_sizes=hp["predictor_hidden_size"],
                nonlinearities=hp["predictor_nonlinearity"],
                keep_rate=hp["predictor_keep_rate"], init_sd=hp["predictor_init_sd"],
                norm=hp["predictor_norm"], norm_eps=hp["predictor_norm_eps"],
                input_decay=hp["predictor_input_decay"],
                input_norm_first=hp["predictor_input_norm_first"],
                input_reset=hp["predictor_input_reset"], layer_mass=hp["layer_mass"],
                uniform_mass=hp["uniform_mass"], seed=hp["seed"], name="predictor")
            self.predictor.build((None, top))
            if self.predictor.uses_trace:  # the predictor's input trace is one more stream state
                self.stream_states.append(
                    StreamState(hp["batch_size"], [top], name="predictor_trace"))
        # ---- statistics and metrics
        stat = dict(trainable=False, aggregation="only_first_replica", autocast=False)
        self.usage = [self.add_weight(name=f"usage_{l}", shape=(u,), initializer="zeros", **stat)
                      for l, u in enumerate(units)]
        self.usage_steps = self.add_weight(name="usage_steps", shape=(), initializer="zeros",
                                           **stat)
        self.time_step = self.add_weight(name="time_step", shape=(), dtype="int64",
                                         initializer="zeros", **stat)
        self.test_state_window = WindowedRate(hp["accuracy_window"], name="test_state_window")
        self.memory_loss_trackers = [keras.metrics.Mean(name=f"memory_loss_{l}")
                                     for l in range(num_layers)]
        self.predictor_loss_tracker = keras.metrics.Mean(name="predictor_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.units = units
        self.built = True

    def _make_layer(self, l, hp, above):
        """The built memory layer l; `above` is the code shape of the layer feeding it back."""
        layer_hp = self.layer_hparams
        args = {k: layer_hp[k][l] for k in _CELL_ARGS}
        args.update(activation=hp["activation"], inhibition_with_mask=hp["inhibition_with_mask"],
                    input_norm_first=hp["input_norm_first"],
                    seed=None if hp["seed"] is None else hp["seed"] + l, name=f"memory_{l}")
        shape = self.input_shapes[l]
        if not _is_conv(layer_hp["kernel_size"][l]):
            feedback = 0 if above is None else math.prod(above)
            cell = RSMCell(**args, feedback_units=feedback)
            cell.build((None, shape[0] + feedback))
            return cell
        kernel, strides = _conv_geometry(layer_hp["kernel_size"][l], layer_hp["strides"][l])
        feedback = None if above is None else (above if len(above) == 3 else (1, 1, above[0]))
        # The feedback is layer l+1's code: at most its k active cells per position.
        cell = ConvRSM(kernel_size=kernel, strides=strides, feedback_shape=feedback,
                       feedback_max_active=None if above is None
                       else layer_hp["active_groups"][l + 1], **args)
        cell.build((None, *shape))
        return cell

    # ------------------------------------------------------------------ configuration

    def compile(self, learning_rate=None, **kwargs):
        """Creates one Adam optimiser per memory layer and one for the predictor.

        `learning_rate` (default: the hparam) is the memory's, and the predictor's unless the
        hparam `predictor_learning_rate` is set.
        """
        lr = self.hparams["learning_rate"] if learning_rate is None else learning_rate
        predictor_lr = self.hparams["predictor_learning_rate"]
        # FusedAdam: Keras' Adam in one kernel per variable (docs/performance.md).
        self.memory_optimizers = [FusedAdam(lr, name=f"memory_{l}_adam")
                                  for l in range(self.num_layers)]
        self.predictor_optimizer = None
        if self.predictor is not None:
            self.predictor_optimizer = FusedAdam(
                lr if predictor_lr is None else predictor_lr, name="predictor_adam")
            self.predictor_optimizer.build(self.predictor.trainable_variables)
        for opt, layer in zip(self.memory_optimizers, self.cells):
            opt.build(layer.trainable_variables)
        super().compile(optimizer=None, **kwargs)

    def checkpoint_items(self):
        """Trackables to put in a `tf.train.Checkpoint`: the model (weights, stream state,
        statistics) and every optimiser."""
        # Every variable by path (`pagi_rsm.checkpointing`). An uncompiled stack (a frozen
        # memory that only runs forward) has no optimisers.
        return model_items(
            self, predictor_optimizer=getattr(self, "predictor_optimizer", None),
            **{f"memory_optimizer_{l}": o
               for l, o in enumerate(getattr(self, "memory_optimizers", ()))})

    @property
    def metrics(self):
        if self.predictor is None:
            return list(self.memory_loss_trackers)
        return (self.memory_loss_trackers
                + [self.predictor_loss_tracker, self.accuracy_tracker,
                   self.cross_entropy_tracker])

    def reset_streams(self):
        """Zeroes the state of every stream (all layers)."""
        for state in self.stream_states:
            state.reset()

    # ------------------------------------------------------------------ forward
    def _pool(self, encoding, l):
        p = self.layer_hparams["pool_size"][l]
        if p == 1:
            return encoding
        if len(self.code_shapes[l]) == 3:   # p×p positions, stride p, SAME
            return tf.nn.max_pool2d(encoding, p, p, "SAME")
        return ops.max(ops.reshape(encoding, (-1, self.units[l] // p, p)), axis=-1)

    def _step(self, x, reset, states, training):
        """The recurrent part of one time step of the whole stack: every layer's code and new
        state, without the decoders and the predictor's MLP (`_heads` runs those).

        `states` holds one state list per layer, then ``[τ]`` when the predictor keeps an
        input trace (the order of `stream_states`). Returns a `_Step`.
        """
        feedback_from = [s[1] for s in states[:self.num_layers]]  # y_{t-1} of every layer
        bi = self.hparams["connectivity"] == "bi"
        results, targets = [], []
        layer_input = x
        for l, cell in enumerate(self.cells):
            layer_input = ops.reshape(layer_input, (-1, *self.input_shapes[l]))
            feedback = feedback_from[l + 1] if (bi and l + 1 < self.num_layers) else None
            with tf.name_scope(f"memory_{l}"):
                out = cell.step(layer_input, states[l], reset=reset, feedback=feedback,
                                training=training, decode=False)
            results.append(out)
            targets.append(layer_input)
            layer_input = self._pool(out.encoding, l)
        new_states = [r.states for r in results]
        if self.predictor is None:
            return _Step(results, targets, None, new_states)
        trace = states[self.num_layers][0] if self.predictor.uses_trace else None
        with tf.name_scope("predictor"):
            top = ops.reshape(results[-1].encoding, (-1, math.prod(self.code_shapes[-1])))
            predictor_input, trace = self.predictor.condition(top, trace, reset)
        if trace is not None:
            new_states.append([trace])
        return _Step(results, targets, predictor_input, new_states)

    def _heads(self, steps, training):
        """Every layer's decoder and memory loss and the predictor's logits for `steps` (a list
        of `_Step`), run once over the rows of all of them.

        The heads read nothing of the recurrence, so when their weights do not change between
        the steps the S steps of a chunk can go through each head as one batch of S·B rows:
        fewer and larger kernels than S separate calls, with the same values
        (docs/performance.md#heads-once-per-chunk).

        Returns ``(decodings, memory_losses, logits)``: decodings[l] [S·B, ...] and logits
        [S·B, K] (None without a predictor) in step-major order; memory_losses[l] the mean
        squared error over all S·B rows, i.e. the mean of the S per-step losses.
        """
        def rows(tensors):
            return tensors[0] if len(tensors) == 1 else ops.concatenate(tensors, axis=0)

        decodings, memory_losses = [], []
        for l, cell in enumerate(self.cells):
            with tf.name_scope(f"memory_{l}"):
                decoded = cell.decode(rows([s.results[l].pooled for s in steps]))
                target = rows([s.targets[l] for s in steps])
                with tf.name_scope("loss"):
                    memory_losses.append(ops.mean(ops.square(
                        ops.cast(target, "float32") - ops.cast(decoded, "float32"))))
            decodings.append(decoded)
        logits = None
        if self.predictor is not None:
            with tf.name_scope("predictor"):
                logits = self.predictor.classify(rows([s.predictor_input for s in steps]),
                                                 training=training)
        return decodings, memory_losses, logits

    def _predictor_loss(self, labels, logits):
        if self.predictor is None:
            return 0.0
        k = self.hparams["num_classes"]
        smoothing = self.hparams["predictor_label_smoothing"]
        logits = ops.cast(logits, "float32")
        if smoothing:
            target = ops.one_hot(labels, k) * (1.0 - smoothing) + smoothing / k
            loss = ops.mean(keras.losses.categorical_crossentropy(target, logits,
                                                                  from_logits=True))
        else:  # the same value without a [B, K] one-hot target (docs/language.md#speed)
            loss = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                         from_logits=True))
        l2 = self.hparams["predictor_l2"]
        if l2:
            loss += l2 * 0.5 * sum(ops.sum(ops.square(w))
                                   for w in self.predictor.trainable_variables)
        return loss

    def _in_interval(self, interval, step):
        first, stop = interval
        inside = step >= first
        if stop > 0:
            inside = tf.logical_and(inside, step < stop)
        return inside

    @staticmethod
    def _total(memory_losses, predictor_loss):
        return ops.sum(ops.stack(memory_losses)) + predictor_loss

    def _apply(self, tape, total, step):
        """Applies every optimiser to its own parameter group.

        The losses share no parameters and every boundary is stop_gradient, so the gradient
        of the summed loss is, per parameter group, the gradient of that group's own loss.
        """
        variables = [c.trainable_variables for c in self.cells]
        optimizers = list(self.memory_optimizers)
        intervals = [self.memory_interval] * self.num_layers
        if self.predictor is not None:
            variables.append(self.predictor.trainable_variables)
            optimizers.append(self.predictor_optimizer)
            intervals.append(self.predictor_interval)
        grads = tape.gradient(total, variables)
        for opt, vs, gs, interval in zip(optimizers, variables, grads, intervals):
            if interval == [0, -1]:
                opt.apply(gs, vs)
            else:
                self._apply_when(self._in_interval(interval, step), opt, gs, vs)

    @staticmethod
    def _apply_when(inside, opt, grads, variables):
        """``opt.apply(grads, variables)`` only where `inside` (a scalar bool) is true.

        On one device a `tf.cond`. Under a strategy that aggregates gradients with a
        `merge_call` (MirroredStrategy, MultiWorkerMirroredStrategy) a cond in the replica
        context cannot hold the update, so the cond runs in the cross-replica context and its
        branch applies on every replica (the pattern of Keras' LossScaleOptimizer). `inside`
        is the same on every replica (it depends on the step only).
        """
        def apply(grads, variables):
            opt.apply(grads, variables)
            return tf.constant(True)

        def skip():
            return tf.constant(False)

        if (not tf.distribute.has_strategy()
                or tf.__internal__.distribute.strategy_supports_no_merge_call()
                or tf.distribute.in_cross_replica_context()):
            tf.cond(inside, lambda: apply(grads, variables), skip)
            return

        def cross_replica(distribution, inside, grads, variables):
            inside = distribution.experimental_local_results(inside)[0]

            def apply_everywhere():
                distribution.extended.call_for_each_replica(apply, args=(grads, variables))
                return tf.constant(True)

            tf.cond(inside, apply_everywhere, skip)

        tf.distribute.get_replica_context().merge_call(cross_replica,
                                                       args=(inside, grads, variables))

    def _run_steps(self, x, labels, reset, states, training, update_each_step):
        """Unrolls the T steps of a chunk; with `update_each_step`, one update per step.

        In training the heads run step by step, where they overlap the recurrence of the next
        steps, even when the update comes once per chunk; in evaluation they run once over all
        T steps (docs/performance.md#heads-once-per-chunk).
        """
        records, parts = [], []
        for t in range(x.shape[1]):
            with _tape(update_each_step) as tape:
                record = self._step(x[:, t], reset[:, t], states, training)
                if training:
                    parts.append(self._head_losses(
                        [record], None if labels is None else labels[:, t:t + 1], training))
                    total = self._total(*parts[-1][:2])
            if update_each_step:
                with tf.name_scope("update"):
                    self._apply(tape, total, self.time_step + t)
            records.append(record)
            states = record.states
        if not training:
            parts = [self._head_losses(records, labels, training)]
        masks = [[r.results[l].mask for r in records] for l in range(self.num_layers)]
        memory_losses = [sum(losses) / len(parts) for losses in zip(*(p[0] for p in parts))]
        predictor_loss = sum(p[1] for p in parts) / len(parts)
        if self.predictor is None:
            return states, memory_losses, 0.0, None, None, masks
        correct, cross_entropy = (ops.concatenate(v, axis=1) if len(v) > 1 else v[0]
                                  for v in zip(*(p[2] for p in parts)))
        return states, memory_losses, predictor_loss, correct, cross_entropy, masks

    def _head_losses(self, records, labels, training):
        """The heads (`_heads`) of the S steps in `records`, once over all of them, with labels
        [B, S]: ``(memory_losses, predictor_loss, (correct, cross_entropy))``, the losses as
        means over the S steps and the scores [B, S] (None without a predictor)."""
        _, memory_losses, logits = self._heads(records, training)
        if self.predictor is None:
            return memory_losses, 0.0, None
        target = _step_major(labels)
        with tf.name_scope("predictor_loss"):
            predictor_loss = self._predictor_loss(target, logits)
        with tf.name_scope("metrics"):
            log_p = self.predictor.log_distribution(logits)  # argmax log P = argmax P
            correct = ops.cast(ops.argmax(log_p, axis=-1) == target, "float32")
            cross_entropy = -ops.take_along_axis(log_p, target[:, None], axis=-1)[:, 0]
        return memory_losses, predictor_loss, tuple(_batch_major(v, len(records))
                                                    for v in (correct, cross_entropy))

    def _chunk(self, data, training):
        if isinstance(data, tuple):   # train_on_batch / fit on arrays pack (x, y, weights)
            data = data[0]
        x = ops.convert_to_tensor(data["inputs"])
        reset = ops.cast(data["reset"], x.dtype)
        labels = test = None
        if self.predictor is not None:
            labels = ops.cast(data["labels"], "int32")
            test = ops.cast(data["test"], "float32")
        steps = x.shape[1]
        if steps is None:
            raise ValueError("the chunk length T (axis 1 of inputs) must be static")
        batch = tf.shape(x)[0]
        states = [s.read(batch) for s in self.stream_states]
        chunk_update = training and self.update_schedule == "chunk"
        with _tape(chunk_update) as tape:
            states, memory_losses, predictor_loss, correct, cross_entropy, masks = \
                self._run_steps(x, labels, reset, states, training,
                                update_each_step=training and not chunk_update)
            total = self._total(memory_losses, predictor_loss)
        if chunk_update:
            with tf.name_scope("update"):
                self._apply(tape, total, self.time_step)
        for state, values in zip(self.stream_states, states):
            state.write(values)
        if training:
            with tf.name_scope("statistics"):
                self._update_statistics(masks, steps, batch)
        self.time_step.assign_add(steps)
        # ---- metrics
        for tracker, value in zip(self.memory_loss_trackers, memory_losses):
            tracker.update_state(value)
        if self.predictor is None:
            return self._logs()
        self.test_state_window.update(correct * test, test)
        self.predictor_loss_tracker.update_state(predictor_loss)
        self.accuracy_tracker.update_state(ops.mean(correct))
        self.cross_entropy_tracker.update_state(ops.mean(cross_entropy))
        return self._logs()

    def boost_scale(self):
        """The boost decay schedule: ``boost_strength_factor ** (time_step // boost_decay_interval)``
        (a float32 scalar; 1 when the factor is 1), the factor by which every layer's
        `boost_strength` is scaled at the next duty-cycle update (bRSM decays it x0.85 every
        1250 steps)."""
        factor = self.hparams["boost_strength_factor"]
        if factor == 1.0:
            return 1.0
        decays = ops.cast(self.time_step // self.hparams["boost_decay_interval"], "float32")
        return ops.power(factor, decays)

    def _update_statistics(self, masks, steps, batch):
        interval = self.hparams["duty_cycle_interval"]
        if interval == -1:
            return
        # Wins per cell over steps, streams and positions (a conv layer has h·w per stream).
        counts = replica_sum([ops.sum(ops.reshape(ops.stack(m), (-1, n)), axis=0)
                              for m, n in zip(masks, self.units)])
        streams = replica_sum(ops.cast(batch, "float32"))  # the global batch
        for usage, count in zip(self.usage, counts):
            usage.assign_add(ops.cast(count, "float32"))
        self.usage_steps.assign_add(float(steps))

        due = self.usage_steps >= interval
        scale = self.boost_scale()
        for cell, usage, code in zip(self.cells, self.usage, self.code_shapes):
            positions = float(math.prod(code[:-1]))
            cell.update_duty_cycle(usage, self.usage_steps * streams * positions,
                                   self.hparams["duty_cycle_rate"], when=due,
                                   boost_scale=scale)
            usage.assign(ops.where(due, ops.zeros_like(usage), usage))
        self.usage_steps.assign(ops.where(due, 0.0, self.usage_steps))

    def _logs(self):
        losses = [t.result() for t in self.memory_loss_trackers]
        memory_loss = ops.sum(ops.stack(losses))
        if self.predictor is None:
            logs = {"loss": memory_loss, "memory_loss": memory_loss}
            logs.update({f"memory_loss_{l}": value for l, value in enumerate(losses)})
        else:
            rate, count = self.test_state_window.result()
            predictor_loss = self.predictor_loss_tracker.result()
            # The epoch mean of the total loss, as the sum of the two means: one scalar add, so
            # the logged value is bit-reproducible (a tracker of per-batch totals differed in
            # the last bit between identical runs although every weight was identical).
            logs = {"loss": memory_loss + predictor_loss, "memory_loss": memory_loss}
            for l, value in enumerate(losses):
                logs[f"memory_loss_{l}"] = value
            logs["predictor_loss"] = predictor_loss
            logs["accuracy"] = self.accuracy_tracker.result()
            logs["perplexity"] = ops.exp(self.cross_entropy_tracker.result())
            logs["test_state_accuracy"] = rate
            logs["test_state_count"] = count
        for l, cell in enumerate(self.cells):
            k, n = cell.active_groups, cell.units
            logs[f"cell_entropy_{l}"] = ops.sum(binary_entropy(cell.duty_cycle)) / max(
                max_entropy(n, k), 1e-12)
        return logs

    def train_step(self, data):
        return self._chunk(data, training=True)

    def test_step(self, data):
        return self._chunk(data, training=False)

    def call(self, data, training=False):
        """Forward pass of a chunk from the current stream state, without changing it.

        Returns a dict of per-step tensors [B, T, ...]: `encoding_<l>`, `mask_<l>`,
        `decoding_<l>` for every layer and `logits` (when there is a predictor). A
        convolutional layer's encoding and mask are [B, T, h, w, n].
        """
        return self.unroll(data, training=training)[0]

    def zero_states(self, batch):
        """The state of `batch` fresh streams (all zeros), in the layout `unroll` takes."""
        return [state.zeros(batch) for state in self.stream_states]

    def unroll(self, data, states=None, training=False):
        """Runs a chunk from `states` without learning and without touching the stream state.

        Args:
          data: a dataset element (``inputs`` [B, T, D], ``reset`` [B, T]).
          states: per-stream state as `zero_states` lays it out, or None for this model's own
            streams (the stored stream state; `call`). Held-out streams (e.g. a probe's) start
            from `zero_states(B)` and pass the returned states to the next chunk.
          training: passed to the layers.

        Returns:
          ``(outputs, states)``: the dict of `call` and the states after the chunk.
        """
        x = ops.convert_to_tensor(data["inputs"])
        reset = ops.cast(data["reset"], x.dtype)
        if states is None:
            batch = tf.shape(x)[0]
            states = [s.read(batch) for s in self.stream_states]
        records = []
        for t in range(x.shape[1]):
            records.append(self._step(x[:, t], reset[:, t], states, training))
            states = records[-1].states
        decodings, _, logits = self._heads(records, training)
        out = {}
        for l in range(self.num_layers):
            out[f"encoding_{l}"] = ops.stack([r.results[l].encoding for r in records], axis=1)
            out[f"mask_{l}"] = ops.stack([r.results[l].mask for r in records], axis=1)
            out[f"decoding_{l}"] = _batch_major(decodings[l], len(records))
        if logits is not None:
            out["logits"] = _batch_major(logits, len(records))
        return out, states

    def step(self, frame, states):
        """One step of generation: feeds `frame` x_t, returns ``(x̂_{t+1}, new_states)``.

        A pure function of its arguments (no variable is read for state or written), so it
        runs inside `tf.while_loop`, `tf.function` and XLA: prime by feeding true frames, then
        feed each prediction back as the next frame.

        Args:
          frame: x_t [B, *input shape].
          states: per-stream state as `zero_states` lays it out (or `[s.read(B) for s in
            stream_states]`).

        Returns:
          ``(prediction, states)``: the bottom layer's decoding at step t + 1, i.e. its
          prediction of the next frame, in the input shape; and the states after step t. The
          step t + 1 of the bottom layer depends on x_t, y_t and the higher layers' y_t only
          (x_{t+1} is just its target), so the prediction is computed from the new states; this
          costs one extra forward pass of the bottom layer per call (its states are discarded
          and recomputed at the next call, when x_{t+1} is known).
        """
        frame = ops.convert_to_tensor(frame)
        batch = tf.shape(frame)[0]
        states = self._step(frame, ops.zeros((batch,), frame.dtype), states,
                            training=False).states
        above = self.hparams["connectivity"] == "bi" and self.num_layers > 1
        ahead = self.cells[0].step(ops.reshape(frame, (-1, *self.input_shapes[0])), states[0],
                                   feedback=states[1][1] if above else None, training=False)
        return ops.reshape(ahead.decoding, (-1, *self.frame_shape)), states

    # ------------------------------------------------------------------ observability
    def write_summaries(self, step, batch):
        """Images and histograms for TensorBoard, written to the caller's default writer.

        Images: the cell-activity raster of stream 0 over the chunk (time × cells, per layer)
        and, when the input is a square image, the strip truth / layer 0's prediction of it /
        |difference| for the first steps of stream 0. Histograms: every weight and the cell duty cycles.
        """
        out = self(batch, training=False)
        x_steps = batch["inputs"].shape[1]
        for l in range(self.num_layers):
            # Time down (each step 8 pixels tall), cells across: |y| of stream 0 in [0, 1].
            code = ops.reshape(ops.abs(out[f"encoding_{l}"][0]), (x_steps, -1))  # [T, cells]
            raster = ops.repeat(code, 8, axis=0)                                 # [8T, cells]
            tf.summary.image(f"memory_{l}/cell_activity", raster[None, :, :, None], step=step)
        x = ops.convert_to_tensor(batch["inputs"])
        size = math.prod(self.frame_shape)
        height, width = (self.frame_shape[:2] if len(self.frame_shape) == 3
                         and self.frame_shape[2] == 1 else (round(size ** 0.5),) * 2)
        if height * width == size:
            steps = min(8, x.shape[1])
            truth = ops.reshape(x[0, :steps], (steps, height, width))
            pred = ops.clip(ops.reshape(ops.cast(out["decoding_0"][0, :steps], x.dtype),
                                        (steps, height, width)), 0.0, 1.0)
            rows = [truth, pred, ops.abs(truth - pred)]
            strip = ops.concatenate([ops.concatenate(list(r), axis=1) for r in rows], axis=0)
            tf.summary.image("memory_0/truth_prediction_difference", strip[None, :, :, None],
                             step=step)
        for w in self.trainable_weights:
            tf.summary.histogram(f"weights/{w.path}", w, step=step)
        for l, cell in enumerate(self.cells):
            tf.summary.histogram(f"memory_{l}/duty_cycle", cell.duty_cycle, step=step)
