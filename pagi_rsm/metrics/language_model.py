"""Perplexity of a word predictor, alone and in an ensemble with a word cache and a uniform
distribution (docs/language.md#ensemble).

The ensemble distribution over the K words at step t is

    P_t = m_layer·softmax(logits_t) + m_cache·C_{t−1}/ΣC_{t−1} + m_uniform/K,

with C the per-stream unigram cache of the words seen so far, C_t = max(κ·C_{t−1}, onehot(w_t))
(κ = the cache decay; an empty cache contributes nothing, its mass is lost as in the original).
`Scorer` runs a model over evaluation chunks in one compiled graph per chunk and returns, per
scored token, the probability each part gives the true word; perplexities of any mixture then
follow in numpy (`mixture_log_prob`), which makes a search of the masses on the validation set
cheap (`search_masses`).
"""
import dataclasses
import itertools
import math

import numpy as np

CACHE_EPS = 1e-10
CACHE_GRID = tuple(round(0.01 * i, 2) for i in range(0, 21))
UNIFORM_GRID = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08)


def mixture_log_prob(p_layer, p_cache, layer_mass, cache_mass, uniform_mass, num_classes):
    """log P(true word) per token of a mixture, from the parts' probabilities of that word."""
    p = layer_mass * p_layer + cache_mass * p_cache + uniform_mass / num_classes
    with np.errstate(divide="ignore"):
        return np.log(p)


def perplexity(log_prob):
    """exp of the mean negative log-probability (inf when a token got probability 0)."""
    return float(math.exp(min(-float(np.mean(log_prob)), 700.0)))


@dataclasses.dataclass
class TokenScores:
    """Per scored token: the layer's and each cache's probability of the true word, and hits.

    Attributes:
      p_layer: float64 [N], softmax of the predictor at the true word.
      p_cache: float64 [D, N], the normalised cache at the true word, one row per cache decay.
      layer_correct, ensemble_correct, cache_correct: bool [N] (argmax == true word) of the
        predictor alone, of the ensemble scored, of the cache (its decay).
      decays: the D cache decays.
    """
    p_layer: np.ndarray
    p_cache: np.ndarray
    layer_correct: np.ndarray
    ensemble_correct: np.ndarray
    cache_correct: np.ndarray
    decays: tuple

    @property
    def count(self):
        return int(self.p_layer.size)


def search_masses(scores, num_classes, layer=True, cache_grid=CACHE_GRID,
                  uniform_grid=UNIFORM_GRID):
    """The masses and decay of the lowest perplexity on `scores` (a `TokenScores`).

    With `layer`, m_layer = 1 − m_cache − m_uniform over the grids; without, the cache and the
    uniform distribution alone (m_uniform = 1 − m_cache, m_cache in (0, 1)).

    Returns:
      dict: layer_mass, cache_mass, uniform_mass, cache_decay, perplexity.
    """
    best = None
    if layer:
        grid = [(1.0 - c - u, c, u) for c, u in itertools.product(cache_grid, uniform_grid)]
    else:
        grid = [(0.0, c, 1.0 - c) for c in np.linspace(0.05, 0.95, 19)]
    for d, decay in enumerate(scores.decays):
        for masses in grid:
            value = perplexity(mixture_log_prob(scores.p_layer, scores.p_cache[d], *masses,
                                                num_classes))
            if best is None or value < best["perplexity"]:
                best = {"layer_mass": round(float(masses[0]), 6),
                        "cache_mass": round(float(masses[1]), 6),
                        "uniform_mass": round(float(masses[2]), 6),
                        "cache_decay": float(decay), "perplexity": value}
    return best


def summarize(scores, num_classes, masses, unigram=None, labels=None):
    """Metrics of one evaluation: perplexities and accuracies (see docs/language.md#metrics).

    Args:
      scores: `TokenScores`.
      num_classes: K.
      masses: dict with layer_mass, cache_mass, uniform_mass, cache_decay (one of
        `scores.decays`) of the ensemble.
      unigram: optional [K] training frequencies; with `labels` ([N] true ids) adds the unigram
        perplexity.
    """
    d = scores.decays.index(masses["cache_decay"])
    ensemble = mixture_log_prob(scores.p_layer, scores.p_cache[d], masses["layer_mass"],
                                masses["cache_mass"], masses["uniform_mass"], num_classes)
    cache_only = search_masses(scores, num_classes, layer=False)
    out = {
        "ensemble_perplexity": perplexity(ensemble),
        "predictor_perplexity": perplexity(np.log(np.maximum(scores.p_layer, 1e-300))),
        "cache_uniform_perplexity": cache_only["perplexity"],
        "predictor_accuracy": float(np.mean(scores.layer_correct)),
        "ensemble_accuracy": float(np.mean(scores.ensemble_correct)),
        "cache_accuracy": float(np.mean(scores.cache_correct)),
        "tokens": scores.count,
    }
    if unigram is not None and labels is not None:
        out["unigram_perplexity"] = perplexity(np.log(unigram[labels]))
    return out


class Scorer:
    """Scores a `SequenceMemoryStack` on evaluation chunks (docs/language.md#ensemble).

    Each chunk runs in one compiled graph: the model's `unroll` from the scorer's own stream
    states (fresh at `reset`), the caches (one per decay) and the parts' probabilities of the
    true words. Neither the model's weights nor its training streams change.

    Args:
      model: a built `SequenceMemoryStack`.
      num_classes: K.
      decays: cache decays to keep caches for.

    One scorer serves any number of evaluations (its graph is traced once per chunk shape).
    """

    def __init__(self, model, num_classes, decays):
        import tensorflow as tf
        self.model = model
        self.num_classes = int(num_classes)
        self.decays = tuple(float(d) for d in decays)
        self._chunk = tf.function(self._score_chunk, reduce_retracing=True)

    def _score_chunk(self, data, states, caches, masses, decay_index):
        import tensorflow as tf
        outputs, states = self.model.unroll(data, states=states, training=False)
        logits = tf.cast(outputs["logits"], tf.float32)          # [B, T, K]
        labels = tf.cast(data["labels"], tf.int32)                # [B, T]
        log_p = tf.nn.log_softmax(logits, axis=-1)
        p_layer = tf.exp(tf.gather(log_p, labels, axis=-1, batch_dims=2))
        layer_hit = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
        decays = tf.constant(self.decays, tf.float32)[None, :, None]   # caches: [B, D, K]
        m_layer, m_cache, m_uniform = tf.unstack(masses)
        p_cache, ensemble_hit, cache_hit = [], [], []
        for t in range(labels.shape[1]):
            label = labels[:, t]
            normalised = caches / (tf.reduce_sum(caches, -1, keepdims=True) + CACHE_EPS)
            p_cache.append(tf.gather(normalised, label[:, None], axis=2, batch_dims=1)[..., 0])
            first = tf.gather(normalised, decay_index, axis=1)
            mixed = m_layer * tf.exp(log_p[:, t]) + m_cache * first + m_uniform / self.num_classes
            ensemble_hit.append(tf.equal(tf.argmax(mixed, -1, output_type=tf.int32), label))
            cache_hit.append(tf.equal(tf.argmax(first, -1, output_type=tf.int32), label))
            caches = tf.maximum(decays * caches,
                                tf.one_hot(label, self.num_classes, dtype=tf.float32)[:, None])
        return (states, caches, p_layer, tf.stack(p_cache, axis=-1), layer_hit,
                tf.stack(ensemble_hit, axis=1), tf.stack(cache_hit, axis=1))

    def score(self, dataset, masses, cache_decay):
        """`TokenScores` of every scored token of `dataset` (elements of
        `pagi_rsm.datasets.ptb.make_language_dataset` in "eval" mode).

        `masses` (layer, cache, uniform) and `cache_decay` (one of `decays`) are the ensemble
        whose accuracy is counted (`ensemble_correct`) and the cache `cache_correct` reads.
        """
        import tensorflow as tf
        if cache_decay not in self.decays:
            raise ValueError(f"cache_decay {cache_decay} is not one of the scorer's decays "
                             f"{self.decays}")
        masses = tf.constant([float(m) for m in masses], tf.float32)
        decay_index = tf.constant(self.decays.index(cache_decay), tf.int32)
        states = caches = None
        parts = [[] for _ in range(5)]
        for data in dataset:
            score = data["score"].numpy().astype(bool)
            if states is None:
                batch = int(data["labels"].shape[0])
                states = self.model.zero_states(batch)
                caches = tf.zeros((batch, len(self.decays), self.num_classes), tf.float32)
            states, caches, *values = self._chunk(data, states, caches, masses, decay_index)
            p_layer, p_cache, layer_hit, ensemble_hit, cache_hit = [v.numpy() for v in values]
            parts[0].append(p_layer[score])
            parts[1].append(np.moveaxis(p_cache, 1, 0)[:, score])
            parts[2].append(layer_hit[score])
            parts[3].append(ensemble_hit[score])
            parts[4].append(cache_hit[score])
        return TokenScores(p_layer=np.concatenate(parts[0]).astype(np.float64),
                           p_cache=np.concatenate(parts[1], axis=1).astype(np.float64),
                           layer_correct=np.concatenate(parts[2]),
                           ensemble_correct=np.concatenate(parts[3]),
                           cache_correct=np.concatenate(parts[4]), decays=self.decays)

