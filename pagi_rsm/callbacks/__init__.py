"""Keras callbacks of pagi-rsm."""
from pagi_rsm.callbacks.batch_metrics import BatchMetrics
from pagi_rsm.callbacks.best_weights import BestWeights, ValidationMonitor
from pagi_rsm.callbacks.epoch_summaries import EpochSummaries
from pagi_rsm.callbacks.boost_strength import BoostStrengthDecay, k_winners_layers
from pagi_rsm.callbacks.heldout_accuracy import HeldOutAccuracy
from pagi_rsm.callbacks.nan_guard import NaNGuard
from pagi_rsm.callbacks.periodic_checkpoint import PeriodicCheckpoint
from pagi_rsm.callbacks.probe_summaries import ProbeSummaries
from pagi_rsm.callbacks.progress import HeadlineProgress
from pagi_rsm.callbacks.run_clock import RunClock
from pagi_rsm.callbacks.stop_at_target import StopAtTarget, TargetStop
from pagi_rsm.callbacks.stop_on_signal import StopOnSignal
from pagi_rsm.callbacks.tensorboard_summaries import BatchSummaries, write_weight_histograms

__all__ = ["BoostStrengthDecay", "k_winners_layers"]
__all__ += ["NaNGuard", "PeriodicCheckpoint", "HeadlineProgress", "RunClock", "StopAtTarget",
            "BatchSummaries", "write_weight_histograms", "ProbeSummaries", "TargetStop",
            "BatchMetrics", "BestWeights", "ValidationMonitor", "HeldOutAccuracy",
            "EpochSummaries", "StopOnSignal"]
