"""Permuted MNIST, dense vs sparse MLP: average accuracy over all tasks after the last one.

Runs named experiments of definitions/continual/experiments.yaml (default: the pair
pmnist_mlp1_dense / pmnist_mlp1_sparse: 10 tasks, one hidden layer of 4000, 2 epochs per task,
SGD lr 0.1 Nesterov 0.9, weight decay 1e-4, dropout 0.5, k-winners percent_on 0.001) through the
``continual`` workflow at each seed, and prints every accuracy matrix, both averages, the gap
and the wall time. Each run's results.json lands in ``<out>/<experiment>-seed<seed>``; runs
already finished there are read, not rerun (so seeds can run in parallel processes and a last
call with every seed prints the whole comparison), and a killed run resumes from its last task.

    python benchmarks/continual.py --seeds 1 2 --mnist_dir ../shared/data/mnist
    python benchmarks/continual.py --seeds 1 --tasks 3 --train_examples 2000   # a quick look
"""
import argparse
import json
import os
import time

DEFINITION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "definitions",
                          "continual", "experiments.yaml")


def run_one(experiment, seed, out, options, hparams):
    """Runs (or reads back) one named experiment at one seed; returns its results dict."""
    from pagi_rsm import definitions
    from pagi_rsm.workflows.workflow import RESULTS_FILE
    directory = os.path.join(out, f"{experiment}-seed{seed}")
    path = os.path.join(directory, RESULTS_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
        if results["evaluation"].get("tasks_done") == results["options"]["workflow-options"][
                "num_tasks"]:
            return results
    raw = definitions.load(DEFINITION)
    raw["parameter-sweeps"] = {}
    [config] = definitions.resolve(
        raw, source=DEFINITION, experiment_overrides={"seed": seed, "summary_dir": directory},
        hparams_overrides=hparams, workflow_option_overrides={"experiment": experiment,
                                                              **options})
    return config.workflow_class(config).run()


def format_matrix(matrix):
    return "\n".join("    " + " ".join("  -  " if v is None else f"{100 * v:5.1f}" for v in row)
                     for row in matrix)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", nargs="+",
                        default=["pmnist_mlp1_dense", "pmnist_mlp1_sparse"],
                        help="named experiments to compare (the first is the baseline)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--out", default="runs/continual_benchmark")
    parser.add_argument("--mnist_dir", default="", help="MNIST IDX directory")
    parser.add_argument("--tasks", type=int, default=None, help="override num_tasks")
    parser.add_argument("--epochs", type=int, default=None, help="override epochs per task")
    parser.add_argument("--train_examples", type=int, default=None,
                        help="override train_examples_per_task (0: all)")
    parser.add_argument("--test_examples", type=int, default=None,
                        help="override test_examples_per_task (0: all)")
    parser.add_argument("--hidden_units", type=int, default=None)
    args = parser.parse_args(argv)
    options = {"mnist_dir": args.mnist_dir, "progress": True}
    if args.tasks is not None:
        options["num_tasks"] = args.tasks
    if args.epochs is not None:
        options["epochs_first_task"] = options["epochs_per_task"] = args.epochs
    if args.train_examples is not None:
        options["train_examples_per_task"] = args.train_examples
    if args.test_examples is not None:
        options["test_examples_per_task"] = args.test_examples
    hparams = {} if args.hidden_units is None else {"hidden_units": args.hidden_units}
    table = {}
    for seed in args.seeds:
        for experiment in args.experiments:
            start = time.perf_counter()
            results = run_one(experiment, seed, args.out, options, hparams)
            table[(experiment, seed)] = results
            print(f"{experiment} seed {seed}: average accuracy "
                  f"{100 * results['evaluation']['average_accuracy']:.2f}% "
                  f"(wall time {results['wall_time_s']:.0f} s, this call "
                  f"{time.perf_counter() - start:.0f} s)", flush=True)
    print("\nAccuracy matrices (row i: after task i; column j: task j; %):")
    for (experiment, seed), results in table.items():
        print(f"  {experiment} seed {seed}:")
        print(format_matrix(results["evaluation"]["accuracy_matrix"]))
    base = args.experiments[0]
    print(f"\n{'seed':>4} " + " ".join(f"{e:>24}" for e in args.experiments)
          + "   gaps vs " + base)
    for seed in args.seeds:
        averages = [100 * table[(e, seed)]["evaluation"]["average_accuracy"]
                    for e in args.experiments]
        gaps = " ".join(f"{a - averages[0]:+.2f}" for a in averages[1:])
        print(f"{seed:>4} " + " ".join(f"{a:23.2f}%" for a in averages) + f"   {gaps}")
    print("wall time (s): " + ", ".join(f"{e} seed {s}: {r['wall_time_s']:.0f}"
                                       for (e, s), r in table.items()))


if __name__ == "__main__":
    main()
