"""Side-by-side timing shared by the benchmark scripts.

The machine is shared and noisy (absolute times wander ±30%), so every benchmark compares
variants measured in the same run: each repetition times every variant back to back, in a
rotating order, and ratios are medians over repetitions of per-repetition ratios.
"""
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
