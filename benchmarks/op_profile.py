"""Per-op time of a compiled step from the TensorFlow profiler, grouped by name scope.

`op_profile(step, categories)` runs `step()` a few times under `tf.profiler.experimental`,
reads the XSpace the profiler writes (the host plane's executor threads: one event per op
kernel, named ``scope/op:OpType``) and sums the kernel time per category. A category is the
first of `categories` (label, regular expression) whose expression matches the op's scope path
(`scope_path`);
ops of the backward pass (scope ``gradient_tape/...``) are matched on the rest of their path
and reported as ``<label> (grad)``. Kernel times on different executor threads can overlap
(inter-op parallelism), so the total may exceed the wall time of the step; the shares are
shares of the summed kernel time.
"""
import collections
import glob
import os
import re
import shutil
import tempfile

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

GRADIENT_PREFIX = "gradient_tape/"


def _kernel_events(space):
    """(op name, op type, duration ms) of every op kernel run on the host's executor threads."""
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = plane.event_metadata
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                # Op kernels are named "scope/op:OpType"; executor and thread-pool events
                # ("ExecutorState::Process", ...) hold "::" and are skipped.
                if ":" not in name or "::" in name or " " in name:
                    continue
                op_name, op_type = name.rsplit(":", 1)
                yield op_name, op_type, event.duration_ps / 1e9


def scope_path(op_name):
    """The op's scope path without the ``_<n>`` suffixes TensorFlow adds to repeated scopes.

    ``memory_0_3/recurrent/MatMul`` (the 4th time step's scope) becomes
    ``memory/recurrent/MatMul``.
    """
    parts = op_name.split("/")
    return "/".join(re.sub(r"(_\d+)+$", "", part) for part in parts)


def categorize(op_name, categories):
    """The label of the first (label, regex) in `categories` matching the op's `scope_path`.

    Ops of the backward pass get the label of their forward op plus " (grad)"; unmatched ops
    are "other".
    """
    grad = op_name.startswith(GRADIENT_PREFIX)
    path = scope_path(op_name[len(GRADIENT_PREFIX):] if grad else op_name)
    for label, pattern in categories:
        if re.search(pattern, path):
            return f"{label} (grad)" if grad else label
    return "other (grad)" if grad else "other"


def op_profile(step, categories, steps=3):
    """Kernel milliseconds per call of `step()`, per category and per op type.

    Args:
      step: a warmed-up callable (e.g. a `tf.function`) returning a tensor.
      categories: list of (label, regex on the op's scope path).
      steps: calls profiled (the figures are per call).

    Returns:
      (per_category: dict label -> ms, per_type: dict (label, op type) -> ms).
    """
    logdir = tempfile.mkdtemp(prefix="op_profile_")
    try:
        tf.profiler.experimental.start(logdir)
        out = None
        for _ in range(steps):
            out = step()
        if hasattr(out, "numpy"):
            out.numpy()
        tf.profiler.experimental.stop()
        [path] = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    per_category = collections.Counter()
    per_type = collections.Counter()
    for op_name, op_type, ms in _kernel_events(space):
        label = categorize(op_name, categories)
        per_category[label] += ms / steps
        per_type[(label, op_type)] += ms / steps
    return dict(per_category), dict(per_type)


def print_profile(title, per_category, per_type, wall_ms=None, top_types=3):
    """Prints a table: category, ms per step, share of the kernel time, its top op types."""
    total = sum(per_category.values())
    wall = f", wall {wall_ms:.1f} ms" if wall_ms else ""
    print(f"{title}: summed kernel time {total:.1f} ms per step{wall}")
    print(f"  {'category':<24} {'ms':>8} {'share':>6}  top op types (ms)")
    for label, ms in sorted(per_category.items(), key=lambda kv: -kv[1]):
        types = sorted(((t, v) for (l, t), v in per_type.items() if l == label),
                       key=lambda kv: -kv[1])[:top_types]
        detail = ", ".join(f"{t} {v:.1f}" for t, v in types)
        print(f"  {label:<24} {ms:8.1f} {100 * ms / total:5.1f}%  {detail}")
