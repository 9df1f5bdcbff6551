"""Penn Treebank: loader (real files and broken ones), embeddings, word streams, the ensemble
scorer against a numpy reference, and the language workflow (tiny corpus: results, resume,
data errors, mirrored)."""
import gzip
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from pagi_rsm import cli, definitions
from pagi_rsm.datasets import embeddings, ptb
from pagi_rsm.metrics import language_model as lm

TEXT = {"train": "a b c a\nb a d\nc c a b e\n", "valid": "a b\nd e a\n", "test": "e d c\n"}


def write_corpus(directory, texts=None, gz=("train",)):
    directory.mkdir(parents=True, exist_ok=True)
    for split, text in (texts or TEXT).items():
        if split in gz:
            with gzip.open(directory / f"ptb.{split}.txt.gz", "wt") as f:
                f.write(text)
        else:
            (directory / f"ptb.{split}.txt").write_text(text)
    return directory


# --- loader ----------------------------------------------------------------------------------------

def test_real_ptb_counts(shared_data):
    corpus = ptb.load_ptb(shared_data / "ptb")
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
    assert corpus.vocab_size == 10000
    assert corpus.vocabulary[:3] == ["the", "<unk>", ptb.EOS]
    # one <eos> per line
    assert int(np.sum(corpus.valid == corpus.vocabulary.index(ptb.EOS))) == 3370


def test_small_corpus_ids_vocabulary_and_eos(tmp_path):
    corpus = ptb.load_ptb(write_corpus(tmp_path / "d"))
    # counts: a 4, b 3, c 3, <eos> 3, d 1, e 1; ties by first occurrence (b before c)
    assert corpus.vocabulary == ["a", "b", "c", ptb.EOS, "d", "e"]
    assert corpus.train.tolist() == [0, 1, 2, 0, 3, 1, 0, 4, 3, 2, 2, 0, 1, 5, 3]
    assert corpus.test.tolist() == [5, 4, 2, 3]
    assert corpus.unigram()[0] == pytest.approx(4 / 15)


def test_plain_and_gzipped_files_read_the_same(tmp_path):
    a = ptb.load_ptb(write_corpus(tmp_path / "a", gz=()))
    b = ptb.load_ptb(write_corpus(tmp_path / "b", gz=("train", "valid", "test")))
    assert a.vocabulary == b.vocabulary and a.train.tolist() == b.train.tolist()


@pytest.mark.parametrize("case,message", [
    ("missing", "ptb.valid.txt.gz"),
    ("empty", "empty"),
    ("truncated_gz", "truncated"),
    ("no_newline", "truncated"),
    ("oov", "line 2: token 'zzz' is not in the training vocabulary"),
])
def test_bad_files_are_clear_errors(tmp_path, case, message):
    directory = write_corpus(tmp_path / "d")
    if case == "missing":
        os.remove(directory / "ptb.valid.txt")
    elif case == "empty":
        (directory / "ptb.test.txt").write_text("\n \n")
    elif case == "truncated_gz":
        raw = (directory / "ptb.train.txt.gz").read_bytes()
        (directory / "ptb.train.txt.gz").write_bytes(raw[:len(raw) // 2])
    elif case == "no_newline":
        (directory / "ptb.test.txt").write_text("e d c")
    else:
        (directory / "ptb.valid.txt").write_text("a b\nd zzz\n")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ptb.load_ptb(directory)


# --- embeddings ------------------------------------------------------------------------------------

def test_binary_code_is_index_bits_then_complement():
    code = embeddings.binary_code(5)       # 3 bits
    assert code.shape == (5, 1, 6)
    assert code[5 - 1, 0].tolist() == [1, 0, 0, 0, 1, 1]      # 4 = 100b
    assert code[3, 0].tolist() == [0, 1, 1, 1, 0, 0]
    assert embeddings.binary_code(10000).shape == (10000, 1, 28)


def test_sparse_and_dense_codes():
    sparse = embeddings.make_embedding("sparse", None, 50, size=40, active=5, seed=1)
    assert sparse.shape == (50, 1, 40) and (sparse.sum(axis=(1, 2)) == 5).all()
    assert len({row.tobytes() for row in sparse}) == 50
    np.testing.assert_array_equal(
        sparse, embeddings.make_embedding("sparse", None, 50, size=40, active=5, seed=1))
    dense = embeddings.make_embedding("dense", None, 50, size=8, seed=1)
    np.testing.assert_allclose(np.linalg.norm(dense[:, 0], axis=1), 1.0, rtol=1e-5)


def test_ppmi_against_hand_computation():
    counts = np.array([[2.0, 0.0], [1.0, 1.0]])
    # P(w,c) / (P(w) P_alpha(c)), alpha = 1: total 4, rows 2/4, 2/4, columns 3/4, 1/4
    expected = np.array([[np.log((2 / 4) / (0.5 * 0.75)), 0.0],
                         [max(np.log((1 / 4) / (0.5 * 0.75)), 0.0),
                          np.log((1 / 4) / (0.5 * 0.25))]])
    np.testing.assert_allclose(embeddings.ppmi(counts, alpha=1.0), expected)


def test_cooccurrence_window_one():
    counts = embeddings.cooccurrence(np.array([0, 1, 0, 2]), 3, contexts=2, window=1)
    # pairs (word, context) within 1: 0-1, 1-0, 1-0, 0-1, 0-2(no: 2 is not a context), 2-0
    assert counts.tolist() == [[0, 2], [2, 0], [1, 0]]


def test_randomized_svd_matches_numpy():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 30))  # rank 8
    u, s = embeddings.randomized_svd(matrix, 5, seed=3)
    _, s_ref, _ = np.linalg.svd(matrix)
    np.testing.assert_allclose(s, s_ref[:5], rtol=1e-6)
    np.testing.assert_allclose(u.T @ u, np.eye(5), atol=1e-8)


def test_distributional_is_cached_by_content(tmp_path, monkeypatch):
    ids = np.random.default_rng(0).integers(0, 30, 2000)
    first = embeddings.make_embedding("distributional", ids, 30, size=4, contexts=10,
                                      cache_dir=str(tmp_path))
    assert first.shape == (30, 1, 4) and len(os.listdir(tmp_path)) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")
    monkeypatch.setattr(embeddings, "distributional", fail)
    again = embeddings.make_embedding("distributional", ids, 30, size=4, contexts=10,
                                      cache_dir=str(tmp_path))
    np.testing.assert_array_equal(first, again)
    with pytest.raises(AssertionError, match="recomputed"):   # other text: another key
        embeddings.make_embedding("distributional", ids[::-1], 30, size=4, contexts=10,
                                  cache_dir=str(tmp_path))


def test_embedding_errors_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="workflow-options.embedding must be one of"):
        embeddings.make_embedding("fasttext", None, 10)
    path = tmp_path / "e.npy"
    np.save(path, np.zeros((9, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"embedding_file .* \[10, h, w\]"):
        embeddings.make_embedding("file", None, 10, path=str(path))
    np.save(path, np.ones((10, 4), np.float32))
    assert embeddings.make_embedding("file", None, 10, path=str(path)).shape == (10, 1, 4)


# --- streams ---------------------------------------------------------------------------------------

def test_training_streams_segments_jumps_and_resume():
    streams = ptb.TrainingStreams(1000, batch_size=6, seed=3, max_length=50)
    positions, reset = streams.positions(0, 400)
    assert reset[:, 0].all()
    for b in range(6):
        step = np.diff(positions[b])
        jumps = np.flatnonzero(reset[b, 1:]) + 1
        # inside a segment the stream reads on (wrapping at the end); resets where it does not
        continuous = (step == 1) | ((positions[b, 1:] == 0) & (positions[b, :-1] == 999))
        assert set(np.flatnonzero(~continuous) + 1) <= set(jumps)
        lengths = np.diff(np.concatenate([[0], jumps, [400]]))
        assert lengths.max() <= 50 and len(jumps) >= 7
    later = ptb.TrainingStreams(1000, batch_size=6, seed=3, max_length=50)
    again, again_reset = later.positions(230, 40)
    np.testing.assert_array_equal(again, positions[:, 230:270])
    np.testing.assert_array_equal(again_reset, reset[:, 230:270])
    other, _ = ptb.TrainingStreams(1000, batch_size=6, seed=4, max_length=50).positions(0, 10)
    assert not np.array_equal(other, positions[:, :10])


def test_evaluation_stripes_score_every_token_once():
    stripes = ptb.EvaluationStripes(103, batch_size=10)
    chunks = stripes.num_chunks(4)
    seen = []
    for i in range(chunks):
        positions, reset, score = stripes.positions(i * 4, 4)
        seen += positions[score].tolist()
        assert reset.any() == (i == 0)
    assert sorted(seen) == list(range(103))


def test_language_dataset_elements_and_resume():
    ids = np.arange(200, dtype=np.int32) % 17
    table = embeddings.binary_code(17)
    ds = ptb.make_language_dataset(ids, table, 4, 5, seed=1)
    chunks = [d for _, d in zip(range(3), ds)]
    assert chunks[0]["inputs"].shape == (4, 5, 10)
    np.testing.assert_array_equal(chunks[1]["inputs"].numpy(),
                                  table[chunks[1]["labels"].numpy()][:, :, 0])
    resumed = next(iter(ptb.make_language_dataset(ids, table, 4, 5, seed=1, start_chunk=2)))
    for key in ("labels", "reset"):
        np.testing.assert_array_equal(resumed[key], chunks[2][key])
    evaluation = list(ptb.make_language_dataset(ids, table, 7, 8, mode="eval"))
    assert len(evaluation) == 4 and sum(float(d["score"].numpy().sum())
                                        for d in evaluation) == 200


# --- ensemble --------------------------------------------------------------------------------------

class _FixedModel:
    """A stand-in for the stack: logits are a fixed function of the label of the previous step."""

    def __init__(self, table):
        self.table = tf.constant(table, tf.float32)

    def zero_states(self, batch):
        return [[tf.zeros((batch,), tf.int32)]]

    def unroll(self, data, states=None, training=False):
        labels = tf.cast(data["labels"], tf.int32)
        previous = tf.concat([states[0][0][:, None], labels[:, :-1]], axis=1)
        return {"logits": tf.gather(self.table, previous)}, [[labels[:, -1]]]


def test_scorer_matches_numpy_reference():
    k, decays, masses = 5, (0.5, 0.9), (0.7, 0.2, 0.1)
    table = np.random.default_rng(0).standard_normal((k, k))
    labels = np.array([[0, 1, 1, 3, 0, 2], [4, 4, 2, 1, 0, 0]], np.int32)
    data = [{"labels": tf.constant(labels[:, i:i + 3]), "score": tf.ones((2, 3))}
            for i in (0, 3)]
    scores = lm.Scorer(_FixedModel(table), k, decays).score(data, masses, 0.5)
    p_layer, p_cache, ens_hit = [], [[], []], []
    for b in range(2):
        caches, previous = np.zeros((2, k)), 0
        for label in labels[b]:
            soft = np.exp(table[previous]) / np.exp(table[previous]).sum()
            normalised = caches / (caches.sum(axis=1, keepdims=True) + lm.CACHE_EPS)
            p_layer.append(soft[label])
            for d in range(2):
                p_cache[d].append(normalised[d, label])
            mixed = masses[0] * soft + masses[1] * normalised[0] + masses[2] / k
            ens_hit.append(np.argmax(mixed) == label)
            caches = np.maximum(np.array(decays)[:, None] * caches, np.eye(k)[label])
            previous = label

    def in_chunk_order(values):   # reference [stream, step] -> chunk by chunk, row-major
        values = np.asarray(values).reshape(2, 6)
        return np.concatenate([values[:, :3].ravel(), values[:, 3:].ravel()])
    np.testing.assert_allclose(scores.p_layer, in_chunk_order(p_layer), rtol=1e-5)
    for d in range(2):
        np.testing.assert_allclose(scores.p_cache[d], in_chunk_order(p_cache[d]), rtol=1e-5,
                                   atol=1e-7)
    np.testing.assert_array_equal(scores.ensemble_correct, in_chunk_order(ens_hit))
    assert scores.count == 12


def test_mixture_perplexity_and_search():
    p_layer = np.array([0.5, 0.25, 0.0])
    p_cache = np.array([[0.0, 0.5, 1.0]])
    log_p = lm.mixture_log_prob(p_layer, p_cache[0], 0.5, 0.5, 0.0, 4)
    assert lm.perplexity(log_p) == pytest.approx(np.exp(-np.mean(np.log([0.25, 0.375, 0.5]))))
    scores = lm.TokenScores(p_layer, p_cache, *(np.zeros(3, bool),) * 3, decays=(0.9,))
    best = lm.search_masses(scores, 4)
    assert best["cache_mass"] == 0.2 and best["cache_decay"] == 0.9   # the largest in the grid


# --- workflow --------------------------------------------------------------------------------------

TINY = {"batch_size": 4, "groups": 4, "cells_per_group": 2, "active_groups": 2,
        "predictor_hidden_size": [8], "recurrent_keep_rate": 1.0, "predictor_l2": 0.0}


def tiny_config(tmp_path, name, batches=4, data=None, options=None, **experiment):
    data = data or write_corpus(tmp_path / "data")
    workflow_options = {"data_dir": str(data), "vocab_size": 6, "chunk_length": 3,
                        "eval_batch_size": 3, "validate_interval": 2, "checkpoint_interval": 2,
                        "progress": False, "search_cache_decays": [0.9]}
    workflow_options.update(options or {})
    [config] = definitions.resolve(
        definitions.load("language/rsm_paper"), "language/rsm_paper", hparams_overrides=TINY,
        experiment_overrides={"batches": batches, "summary_dir": str(tmp_path / name),
                              **experiment},
        workflow_option_overrides=workflow_options)
    return config


def test_language_workflow_runs_reports_and_resumes(tmp_path):
    config = tiny_config(tmp_path, "full")
    full = config.workflow_class(config).run()
    assert full["status"] == "completed"
    evaluation = full["evaluation"]
    for key in ("ensemble_perplexity", "predictor_perplexity", "cache_uniform_perplexity",
                "predictor_accuracy", "ensemble_accuracy", "valid_ensemble_perplexity",
                "mass_cache_decay"):
        assert key in evaluation, key
    assert evaluation["tokens"] == 4 and evaluation["valid_tokens"] == 7
    assert full["headline"]["value"] == evaluation["ensemble_perplexity"]
    curve = [json.loads(line) for line in open(tmp_path / "full" / "curve.jsonl")]
    assert [(r["phase"], r["batch"]) for r in curve] == [("valid", 2), ("valid", 4),
                                                          ("test", 4)]
    cut = tiny_config(tmp_path, "cut", batches=2)
    cut.workflow_class(cut).run()
    again = tiny_config(tmp_path, "cut")
    resumed = again.workflow_class(again).run()
    assert resumed["resumed_from"] == 2
    assert resumed["metrics"] == full["metrics"]
    assert resumed["evaluation"] == full["evaluation"]


def test_missing_data_is_one_line_exit_2_and_no_run_dir(tmp_path, capsys):
    data = write_corpus(tmp_path / "data")
    os.remove(data / "ptb.test.txt")
    run_dir = tmp_path / "run"
    status = cli.main(["pagi", "run", "--definition=language/rsm_paper",
                       f"--summary_dir={run_dir}", f"--workflow_options={{data_dir: {data}}}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "ptb.test.txt" in err[0]
    assert not run_dir.exists()


def test_bad_options_name_the_option(tmp_path):
    with pytest.raises(definitions.DefinitionError, match="embedding"):
        tiny_config(tmp_path, "x", options={"embedding": "word2vec"})
    with pytest.raises(definitions.DefinitionError, match="cache_mass"):
        tiny_config(tmp_path, "x", options={"cache_mass": 0.5})
    config = tiny_config(tmp_path, "x", options={"vocab_size": 7})
    with pytest.raises(definitions.DefinitionError, match="vocab_size is 7"):
        config.workflow_class.check_data(config)


def test_language_workflow_mirrored(tmp_path):
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    results = {}
    for distribution in ("default", "mirrored"):
        config = tiny_config(tmp_path, distribution, batches=2, distribution=distribution,
                             options={"validate_interval": 0})
        results[distribution] = config.workflow_class(config).run()
    assert results["mirrored"]["replicas"] == 2
    for key, value in results["default"]["evaluation"].items():
        np.testing.assert_allclose(results["mirrored"]["evaluation"][key], value, rtol=1e-3,
                                   err_msg=key)
