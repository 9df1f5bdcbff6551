"""indexed_stream: element i is produce(i), in order, restartable at any index."""
import numpy as np
import tensorflow as tf

from pagi_rsm.datasets.indexed_stream import indexed_stream

SIGNATURE = (tf.TensorSpec((2, None), tf.int32), tf.TensorSpec((), tf.float32))


def _produce(index):
    return np.arange(index % 3 + 1, dtype=np.int32)[None].repeat(2, 0), np.float32(index / 2)


def _take(dataset, count):
    return [(a.numpy().tolist(), float(b)) for a, b in dataset.take(count)]


def test_elements_shapes_and_restart():
    ds = indexed_stream(_produce, SIGNATURE)
    first, second = ds.element_spec
    assert first.shape.as_list() == [2, None] and second.shape.rank == 0
    whole = _take(ds, 7)
    assert whole == [(_produce(i)[0].tolist(), i / 2) for i in range(7)]
    assert _take(ds, 7) == whole                                       # a second iterator
    assert _take(indexed_stream(_produce, SIGNATURE, start=4), 3) == whole[4:]   # a resume
    assert len(list(indexed_stream(_produce, SIGNATURE, start=2, stop=5))) == 3


def test_calls_are_in_order():
    seen = []

    def produce(index):
        seen.append(index)
        return (np.int32(index),)

    list(indexed_stream(produce, [tf.TensorSpec((), tf.int32)], start=5, stop=9))
    assert seen == [5, 6, 7, 8]
