"""Fixed token embeddings: one [h, w] array per token, the input of a language-model RSM.

An embedding is any float32 array [K, h, w] (K = the vocabulary size); the RSM reads row k,
flattened, when token k comes. Built-in kinds (docs/language.md#embeddings):

- ``sparse``: a random sparse binary code per token (`bits` wide, `active` ones), seeded;
- ``binary``: the original's binary code of the token index followed by its complement
  (2·⌈log2 K⌉ wide, exactly ⌈log2 K⌉ ones per token);
- ``dense``: seeded Gaussian vectors (`size` wide), each scaled to unit length;
- ``distributional``: computed from the training text alone: a truncated SVD (randomised, numpy)
  of the positive pointwise mutual information (PPMI) between each word and the `contexts` most
  frequent words within `window` tokens either side (context counts smoothed by the power
  0.75); row k is U_k·√S, columns standardised;
- ``file``: a user's ``.npy`` of shape [K, h, w] or [K, d].

`make_embedding` caches the computed kinds in `cache_dir` under a hash of the training ids and
the arguments, so a second run loads the array instead of recomputing it.
"""
import hashlib
import json
import math
import os

import numpy as np

from pagi_rsm import checks

KINDS = ("sparse", "binary", "dense", "distributional", "file")


def binary_code(vocab_size):
    """[K, 1, 2b] with b = ⌈log2 K⌉: the bits of k (most significant first), then 1 − bits."""
    bits = max(1, math.ceil(math.log2(vocab_size)))
    k = np.arange(vocab_size)[:, None]
    code = (k >> np.arange(bits - 1, -1, -1)[None, :]) & 1
    return np.concatenate([code, 1 - code], axis=1).astype(np.float32)[:, None, :]


def sparse_code(vocab_size, bits, active, seed):
    """[K, 1, bits]: per token `active` distinct random positions set to 1 (seeded)."""
    bits = checks.check_int("embedding_size", bits, low=1)
    active = checks.check_int("embedding_active", active, low=1, high=bits)
    rng = np.random.default_rng(seed)
    code = np.zeros((vocab_size, bits), np.float32)
    picks = np.argsort(rng.random((vocab_size, bits)), axis=1)[:, :active]
    np.put_along_axis(code, picks, 1.0, axis=1)
    return code[:, None, :]


def dense_code(vocab_size, size, seed):
    """[K, 1, size]: seeded Gaussian vectors of unit length."""
    size = checks.check_int("embedding_size", size, low=1)
    vectors = np.random.default_rng(seed).standard_normal((vocab_size, size))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)[:, None, :]


def cooccurrence(ids, vocab_size, contexts, window):
    """Counts [K, C] of context word c (one of the C most frequent ids, i.e. ids < C when ids
    are ordered by frequency) within `window` tokens either side of each word."""
    ids = np.asarray(ids, np.int64)
    counts = np.zeros(vocab_size * contexts, np.float64)
    for shift in range(1, window + 1):
        for words, context in ((ids[:-shift], ids[shift:]), (ids[shift:], ids[:-shift])):
            keep = context < contexts
            counts += np.bincount(words[keep] * contexts + context[keep],
                                  minlength=vocab_size * contexts)
    return counts.reshape(vocab_size, contexts)


def ppmi(counts, alpha=0.75):
    """Positive PMI of a count matrix [K, C], context counts smoothed by the power `alpha`."""
    total = counts.sum()
    words = counts.sum(axis=1, keepdims=True)
    context = counts.sum(axis=0, keepdims=True) ** alpha
    context /= context.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * 1.0 / (np.maximum(words, 1e-12) / total * context * total))
    return np.where(counts > 0, np.maximum(pmi, 0.0), 0.0)


def randomized_svd(matrix, rank, seed, oversample=10, power_iterations=4):
    """(U [m, rank], S [rank]) of a truncated SVD, by random projection (Halko et al.)."""
    rng = np.random.default_rng(seed)
    q = matrix @ rng.standard_normal((matrix.shape[1], rank + oversample))
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(q)
        q, _ = np.linalg.qr(matrix.T @ q)
        q = matrix @ q
    q, _ = np.linalg.qr(q)
    u, s, _ = np.linalg.svd(q.T @ matrix, full_matrices=False)
    return (q @ u)[:, :rank], s[:rank]


def distributional(ids, vocab_size, size, seed, contexts=2000, window=2):
    """[K, 1, size]: the PPMI-SVD embedding of the training ids (see the module docstring)."""
    size = checks.check_int("embedding_size", size, low=1)
    contexts = min(checks.check_int("embedding_contexts", contexts, low=1), vocab_size)
    if size > contexts:
        raise ValueError(f"embedding_size ({size}) must be <= embedding_contexts ({contexts}) "
                         f"for the distributional embedding")
    u, s = randomized_svd(ppmi(cooccurrence(ids, vocab_size, contexts, window)), size, seed)
    vectors = u * np.sqrt(s)[None, :]
    vectors -= vectors.mean(axis=0, keepdims=True)
    vectors /= np.maximum(vectors.std(axis=0, keepdims=True), 1e-12)
    return vectors.astype(np.float32)[:, None, :]


def load_file(path, vocab_size):
    """A user's ``.npy`` embedding, checked: [K, h, w] or [K, d] (-> [K, 1, d])."""
    if not path:
        raise ValueError("embedding 'file' needs workflow-options.embedding_file (a .npy path)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"embedding_file not found: {path}")
    array = np.load(path, allow_pickle=False)
    if array.ndim == 2:
        array = array[:, None, :]
    if array.ndim != 3 or array.shape[0] != vocab_size:
        raise ValueError(f"embedding_file {path} has shape {array.shape}; it must be "
                         f"[{vocab_size}, h, w] or [{vocab_size}, d] (one row per word of the "
                         f"{vocab_size}-word vocabulary)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"embedding_file {path} holds non-finite values")
    return array.astype(np.float32)


def make_embedding(kind, train_ids, vocab_size, *, size=100, active=20, seed=0, path="",
                   cache_dir="", contexts=2000, window=2):
    """The [K, h, w] float32 embedding of `kind` (one of `KINDS`; see the module docstring).

    Args:
      kind: the embedding's name.
      train_ids: the training token ids (used by "distributional", and in the cache key).
      vocab_size: K.
      size: width of "sparse", "dense" and "distributional".
      active: ones per token of "sparse".
      seed: seed of the random kinds and of the randomised SVD.
      path: the .npy file of "file".
      cache_dir: directory of cached embeddings ("" : no cache).
      contexts, window: context words and window of "distributional".

    Raises:
      ValueError: an unknown kind, or arguments it does not allow (naming the option).
    """
    if kind not in KINDS:
        raise ValueError(f"workflow-options.embedding must be one of {', '.join(KINDS)}, got "
                         f"{kind!r}")
    vocab_size = checks.check_int("vocab_size", vocab_size, low=2)
    if kind == "file":
        return load_file(path, vocab_size)
    if kind == "binary":
        return binary_code(vocab_size)
    if kind == "sparse":
        return sparse_code(vocab_size, size, active, seed)
    if kind == "dense":
        return dense_code(vocab_size, size, seed)
    args = {"kind": kind, "vocab_size": vocab_size, "size": size, "seed": seed,
            "contexts": contexts, "window": window}
    cached = cache_path(cache_dir, train_ids, args) if cache_dir else None
    if cached and os.path.isfile(cached):
        array = np.load(cached, allow_pickle=False)
        if array.shape[0] == vocab_size:
            return array
    array = distributional(train_ids, vocab_size, size, seed, contexts, window)
    if cached:
        os.makedirs(cache_dir, exist_ok=True)
        temporary = f"{cached}.{os.getpid()}.tmp.npy"
        np.save(temporary, array)
        os.replace(temporary, cached)
    return array


def cache_path(cache_dir, train_ids, args):
    """``<cache_dir>/<kind>-<hash>.npy``: the hash covers the training ids and the arguments."""
    digest = hashlib.sha256(np.ascontiguousarray(train_ids, np.int32).tobytes())
    digest.update(json.dumps(args, sort_keys=True).encode())
    return os.path.join(cache_dir, f"{args['kind']}-{digest.hexdigest()[:20]}.npy")
