"""Side-by-side timing shared by the benchmark scripts.

The machine is shared and noisy (absolute times wander ±30%), so every benchmark compares
variants measured in the same run: each repetition times every variant back to back, in a
rotating order, and ratios are medians over repetitions of per-repetition ratios.
"""
import os
import statistics
import time


def time_steps(step, steps):
    """(wall ms, process-CPU ms) per call of `step()` over `steps` consecutive calls.

    `step` returns a tensor (or anything with `.numpy()`); the last result is waited for.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = None
    for _ in range(steps):
        result = step()
    if hasattr(result, "numpy"):
        result.numpy()
    return ((time.perf_counter() - wall) / steps * 1e3,
            (time.process_time() - cpu) / steps * 1e3)


def interleaved(variants, repeats, steps=1, warmup=2):
    """Times every variant `repeats` times, interleaved.

    Args:
      variants: list of (label, step) pairs; `step()` runs one step.
      repeats: repetitions (medians are taken over them).
      steps: calls per timed repetition.
      warmup: untimed calls per variant first (tracing, allocation).

    Returns:
      dict label -> {"wall": [ms...], "cpu": [ms...]}.
    """
    for _, step in variants:
        for _ in range(warmup):
            out = step()
            if hasattr(out, "numpy"):
                out.numpy()
    times = {label: {"wall": [], "cpu": []} for label, _ in variants}
    for rep in range(repeats):
        shift = rep % len(variants)
        for label, step in variants[shift:] + variants[:shift]:
            wall, cpu = time_steps(step, steps)
            times[label]["wall"].append(wall)
            times[label]["cpu"].append(cpu)
    return times


def median(values):
    return statistics.median(values)


def median_ratio(times, label, base, kind="wall"):
    """Median over repetitions of times[label] / times[base]."""
    return statistics.median(v / b for v, b in zip(times[label][kind], times[base][kind]))


def quartiles(values):
    """(first quartile, median, third quartile) of `values` (the spread of a timing)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def ratios(times, label, base, kind="wall"):
    """Per-repetition ratios times[label] / times[base]."""
    return [v / b for v, b in zip(times[label][kind], times[base][kind])]


def describe(values, unit="", digits=2):
    """``median [q1-q3]`` of `values`, e.g. ``"2.91x [2.80-3.02]"``."""
    q1, q2, q3 = quartiles(values)
    return f"{q2:.{digits}f}{unit} [{q1:.{digits}f}-{q3:.{digits}f}]"


MATMUL_LABEL = "matmul_2048"


def matmul_variant(size=2048):
    """(label, step, flops): a size³ float32 matmul, the machine's reference rate.

    Timed among a benchmark's variants, it shows the load the machine was under. Quiet
    2-core machines measured: 190-210 GFLOP/s (AMD EPYC) to about 300 GFLOP/s with AVX-512,
    105-125 GFLOP/s with AVX2 + FMA only (docs/performance.md).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    a = tf.random.normal((size, size), seed=1)
    b = tf.random.normal((size, size), seed=2)
    step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    return MATMUL_LABEL, step, 2 * size ** 3


# Quiet 2-core figures of the 2048^3 matmul, by the widest vector unit (docs/performance.md).
QUIET_MATMUL_GFLOPS = {"avx512": "190-310", "avx2": "105-125"}


def cpu_vector_unit():
    """"avx512", "avx2" or "other": the widest float vector unit the CPU reports (Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return "other"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags and "fma" in flags else "other"


def machine_line(times, flops, label=MATMUL_LABEL):
    """One line giving the matmul rate measured among the variants (median [quartiles]) and
    what the same matmul gives on a quiet machine with this CPU's vector unit."""
    rates = [flops / (ms / 1e3) / 1e9 for ms in times[label]["wall"]]
    unit = cpu_vector_unit()
    quiet = QUIET_MATMUL_GFLOPS.get(unit)
    reference = (f"{quiet} GFLOP/s on a quiet 2-core {unit.upper()} machine" if quiet
                 else "no quiet reference for this CPU")
    return (f"machine: 2048^3 float32 matmul {describe(rates, ' GFLOP/s', 1)} in this run "
            f"(median [quartiles] of {len(rates)} interleaved repetitions; {reference}; "
            f"{os.cpu_count()} logical CPUs)")
