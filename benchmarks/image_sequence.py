"""RSM vs the LSTM baseline on the stochastic 8 x 9 image sequences: accuracy vs time steps.

Trains (or reads) two `pagi run`s on the same streams: `definitions/image_sequence/pagi9.yaml`
(RSM, README values, chunks of 9 steps) and `pagi9_lstm.yaml` (LSTM, 450 units, BPTT truncated to
30 steps, state carried across batches), then prints

- the online accuracy (over the last 30000 predictions, training streams) and the held-out
  accuracy (MNIST test images, memory frozen) of both against time steps,
- the time steps and wall time each needs to reach 95% of the Bayes ceiling (8/9) online, and
  their ratios LSTM / RSM (n/a when a model did not get there),
- the parameter counts, and the peak resident memory of each training process (a whole
  process: TensorFlow, the data pipeline and MNIST included),
- with matplotlib installed, a figure (``--figure``) of both curves.

Usage:
  PAGI_RSM_MNIST_DIR=../shared/data/mnist python benchmarks/image_sequence.py --steps 20000
  python benchmarks/image_sequence.py --from_runs runs/pagi9 runs/pagi9_lstm --figure f.png

With --steps both models train for that many time steps each (one after the other, in their
own processes, so their memory is measured apart). Timings on a shared machine are only
comparable when both ran under the same load. docs/image_sequence.md has measured figures.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFINITIONS = {"rsm": REPO / "definitions/image_sequence/pagi9.yaml",
               "lstm": REPO / "definitions/image_sequence/pagi9_lstm.yaml"}
FRACTION = 0.95


def train(model, steps, summary_dir, extra_options):
    """Runs `pagi run` for `model` for about `steps` time steps; returns its peak RSS in MiB."""
    import yaml
    definition = yaml.safe_load(DEFINITIONS[model].read_text())
    chunk = definition["workflow-options"]["chunk_length"]
    options = {"stop_metric": "", **extra_options}
    command = [sys.executable, "-m", "pagi_rsm.cli", "run", f"--definition={DEFINITIONS[model]}",
               f"--batches={-(-steps // chunk)}", f"--summary_dir={summary_dir}",
               f"--workflow_options={json.dumps(options)}"]
    started = time.time()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"{model} run failed (status {status}): {' '.join(command)}")
    print(f"{model}: trained in {time.time() - started:.0f} s", flush=True)
    return usage.ru_maxrss / 1024.0   # Linux: KiB


def read_run(summary_dir):
    """(chunk_length, ceiling, {tag: [(step, wall_time, value)]}) of a finished or running run."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator as ea
    import yaml
    definition = yaml.safe_load((pathlib.Path(summary_dir) / "definition.yaml").read_text())
    chunk = definition["workflow-options"]["chunk_length"]
    acc = ea.EventAccumulator(str(summary_dir), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    curves = {}
    for tag in ("train/test_state_accuracy", "train/test_state_count", "heldout/accuracy",
                "heldout/ceiling"):
        if tag in acc.Tags()["tensors"]:
            curves[tag] = [(e.step, e.wall_time, float(tf.make_ndarray(e.tensor_proto)))
                           for e in acc.Tensors(tag)]
    ceiling = curves["heldout/ceiling"][-1][2] if "heldout/ceiling" in curves else 8 / 9
    return chunk, ceiling, curves


def first_reach(curve, counts, target, window):
    """(batch, wall seconds since the first point) where the windowed metric first reaches
    `target` with a full window, or None."""
    full = {step: value >= window for step, _, value in counts}
    start = curve[0][1]
    for step, wall, value in curve:
        if value >= target and full.get(step, False):
            return step, wall - start
    return None


def parameter_counts(definitions_resolve):
    """Trainable parameters of the RSM stack (README values) and the 450-unit LSTM."""
    counts = {}
    for model, path in DEFINITIONS.items():
        import yaml
        definition = yaml.safe_load(path.read_text())
        [config] = definitions_resolve(definition, source=str(path))
        workflow = config.workflow_class(config, summary_dir="/tmp/unused")
        component = workflow.create_component()
        counts[model] = int(sum(int(w.numpy().size) for w in component.trainable_weights))
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000, help="time steps per model")
    parser.add_argument("--from_runs", nargs=2, metavar=("RSM_DIR", "LSTM_DIR"),
                        help="read these summary directories instead of training")
    parser.add_argument("--out", default="runs/benchmark_image_sequence",
                        help="parent of the two runs' summary directories")
    parser.add_argument("--every", type=int, default=2000, help="table row every N steps")
    parser.add_argument("--figure", default="", help="write a PNG of the curves here")
    parser.add_argument("--workflow_options", default="{}",
                        help="extra workflow options (JSON) for both runs")
    parser.add_argument("--plot_runs", nargs="+", metavar="DIR",
                        help="only plot these runs' online and held-out curves (--figure)")
    args = parser.parse_args(argv)
    if args.plot_runs:
        plot({pathlib.Path(d).name: read_run(d) for d in args.plot_runs}, args.figure,
             "MNIST image sequences", None)
        return

    rss = {}
    if args.from_runs:
        dirs = dict(zip(("rsm", "lstm"), args.from_runs))
    else:
        dirs = {m: os.path.join(args.out, m) for m in DEFINITIONS}
        for model in DEFINITIONS:
            rss[model] = train(model, args.steps, dirs[model],
                               json.loads(args.workflow_options))

    from pagi_rsm import definitions
    params = parameter_counts(definitions.resolve)
    runs = {m: read_run(d) for m, d in dirs.items()}
    ceiling = runs["rsm"][1]
    target = FRACTION * ceiling
    print(f"\nstochastic 8x9 image sequences: Bayes ceiling {ceiling:.4f}; target {FRACTION:.0%} "
          f"of it = {target:.4f} (online, over a full window)")
    print(f"{'model':6} {'params':>10} {'peak RSS MiB':>13} {'chunk':>6} {'steps run':>10}")
    for model, (chunk, _, curves) in runs.items():
        steps = curves["train/test_state_accuracy"][-1][0] * chunk
        memory = f"{rss[model]:.0f}" if model in rss else "n/a"
        print(f"{model:6} {params[model]:>10,} {memory:>13} {chunk:>6} {steps:>10}")

    print(f"\n{'steps':>7} | {'RSM online':>10} {'held-out':>9} | {'LSTM online':>11} "
          f"{'held-out':>9}")

    def at(curve, steps, chunk, end):
        points = [v for s, _, v in curve if s * chunk <= steps]
        return f"{points[-1]:.4f}" if points and steps <= end else "-"

    last = max(c["train/test_state_accuracy"][-1][0] * ch for ch, _, c in runs.values())
    for steps in range(args.every, last + 1, args.every):
        row = []
        for model in ("rsm", "lstm"):
            chunk, _, curves = runs[model]
            end = curves["train/test_state_accuracy"][-1][0] * chunk
            row += [at(curves["train/test_state_accuracy"], steps, chunk, end),
                    at(curves.get("heldout/accuracy", []), steps, chunk, end)]
        print(f"{steps:>7} | {row[0]:>10} {row[1]:>9} | {row[2]:>11} {row[3]:>9}")

    reached = {}
    for model, (chunk, _, curves) in runs.items():
        window = curves["train/test_state_count"][-1][2] if curves.get(
            "train/test_state_count") else 0
        hit = first_reach(curves["train/test_state_accuracy"],
                          curves.get("train/test_state_count", []), target, window)
        reached[model] = None if hit is None else (hit[0] * chunk, hit[1])
        text = "not reached" if hit is None else f"{hit[0] * chunk} steps, {hit[1]:.0f} s"
        print(f"{model}: {FRACTION:.0%} of the ceiling online: {text}")
    if all(reached.values()):
        print(f"ratio LSTM / RSM: steps {reached['lstm'][0] / reached['rsm'][0]:.2f}, "
              f"wall time {reached['lstm'][1] / max(reached['rsm'][1], 1e-9):.2f}")
    else:
        print("ratio LSTM / RSM: n/a (a model did not reach the target)")

    if args.figure:
        plot({m.upper(): run for m, run in runs.items()}, args.figure,
             "Stochastic 8x9 MNIST sequences", (ceiling, target))


def plot(runs, figure, title, lines):
    """A PNG of online (lines) and held-out (dots) accuracy against time steps."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, (chunk, _, curves) in runs.items():
        for tag, style in (("train/test_state_accuracy", "-"), ("heldout/accuracy", "o--")):
            if tag in curves:
                xs = [s * chunk for s, _, _ in curves[tag]]
                ax.plot(xs, [v for _, _, v in curves[tag]], style, markersize=3,
                        label=f"{name} {'online' if 'train' in tag else 'held-out'}")
    if lines:
        ceiling, target = lines
        ax.axhline(ceiling, color="k", linestyle=":", label=f"ceiling {ceiling:.4f}")
        ax.axhline(target, color="grey", linestyle=":", label=f"{FRACTION:.0%} of ceiling")
    ax.set_xlabel("time steps")
    ax.set_ylabel("next-digit accuracy")
    ax.set_title(title)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(figure, dpi=100)
    print(f"figure: {figure}")

if __name__ == "__main__":
    main()
