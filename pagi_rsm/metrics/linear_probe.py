"""`LinearProbe`: how well a linear readout fitted to a representation predicts the labels.

A diagnostic for learned codes (e.g. the RSM memory's sparse code): if the probe's accuracy is
high while the model's own predictor lags, the predictor, not the code, is the bottleneck. The
probe is ridge regression onto one-hot labels with a bias, solved in closed form in float64:

    W = argmin ||[X 1] W - Y||^2 + l2 ||W_X||^2,   prediction = argmax([x 1] W)

(the bias is not penalised). Features are added in pieces, first the ones to fit on
(`add_train`), then the held-out ones to score (`add_test`), so only the `[D+1, D+1]` normal
equations are kept, never the features themselves: millions of samples cost nothing extra.
Pure numpy; no TensorFlow.

Example:
  >>> import numpy as np
  >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]])
  >>> probe = LinearProbe(num_classes=2, l2=1e-3)
  >>> probe.add_train(x[:2], [0, 1])
  >>> probe.add_test(x[2:], [0, 1])
  array([1., 1.])
  >>> probe.result()
  (1.0, 2)
"""
import numpy as np

from pagi_rsm.checks import check_int

__all__ = ["LinearProbe"]


class LinearProbe:
    """Ridge-regression readout: fit on `add_train` samples, score on `add_test` samples.

    Args:
      num_classes: number of label classes, >= 2.
      l2: ridge penalty >= 0 on the weights (not the bias); > 0 keeps the normal equations
        well posed for codes with unused units.

    Calling `add_test` solves the normal equations once (the readout is fixed from then on);
    `result()` gives (accuracy, count) over the test samples so far; a `weights` mask given to
    `add_test` scores only the samples where it is nonzero (e.g. the grammar's test states).
    """

    def __init__(self, num_classes, l2=1.0):
        check_int("num_classes", num_classes, 2)
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
            raise ValueError(f"l2 must be a number >= 0, got {l2!r}")
        self.num_classes = int(num_classes)
        self.l2 = float(l2)
        self._gram = None      # [D+1, D+1] sum of [x 1]^T [x 1]
        self._moment = None    # [D+1, C] sum of [x 1]^T y
        self._readout = None   # [D+1, C], solved at the first add_test
        self.train_count = 0
        self._correct = 0.0
        self._count = 0.0

    @staticmethod
    def _design(features):
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {x.shape}")
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    def _labels(self, labels, n):
        y = np.asarray(labels).reshape(-1)
        if len(y) != n:
            raise ValueError(f"labels must have one entry per feature row ({n}), got {len(y)}")
        if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}), got values "
                             f"{y.min()}..{y.max()}")
        return y.astype(np.int64)

    def add_train(self, features, labels):
        """Adds samples to fit on (`features` [N, D], integer `labels` [N])."""
        if self._readout is not None:
            raise RuntimeError("add_train after add_test: the readout is already solved")
        x = self._design(features)
        y = self._labels(labels, len(x))
        if self._gram is None:
            self._gram = np.zeros((x.shape[1], x.shape[1]))
            self._moment = np.zeros((x.shape[1], self.num_classes))
        elif x.shape[1] != self._gram.shape[0]:
            raise ValueError(f"features must have {self._gram.shape[0] - 1} columns, got "
                             f"{x.shape[1] - 1}")
        self._gram += x.T @ x
        np.add.at(self._moment.T, y, x)   # += x^T one_hot(y), without forming one_hot
        self.train_count += len(x)

    def _solve(self):
        if self._gram is None:
            raise RuntimeError("add_train must come before add_test (nothing to fit on)")
        penalty = np.full(len(self._gram), self.l2)
        penalty[-1] = 0.0   # the bias
        self._readout = np.linalg.lstsq(self._gram + np.diag(penalty), self._moment,
                                        rcond=None)[0]

    def add_test(self, features, labels, weights=None):
        """Scores samples with the readout; `weights` [N] (optional) masks or weights them.

        Returns:
          float64 `[N]`: 1.0 where the readout predicts the label, else 0.0 (unweighted).
        """
        if self._readout is None:
            self._solve()
        x = self._design(features)
        if x.shape[1] != self._readout.shape[0]:
            raise ValueError(f"features must have {self._readout.shape[0] - 1} columns, got "
                             f"{x.shape[1] - 1}")
        y = self._labels(labels, len(x))
        w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if len(w) != len(x):
            raise ValueError(f"weights must have one entry per feature row ({len(x)}), got "
                             f"{len(w)}")
        correct = (np.argmax(x @ self._readout, axis=1) == y).astype(np.float64)
        self._correct += float(np.sum(correct * w))
        self._count += float(np.sum(w))
        return correct

    def result(self):
        """(accuracy, count) over the test samples added so far (accuracy 0.0 if none)."""
        count = self._count
        accuracy = self._correct / count if count else 0.0
        return accuracy, int(round(count))
