"""A tf.data stream whose element i is a numpy function of i (the Python side of a dataset).

The datasets of this package make their batches in numpy (grammar streams, whole strings,
associative-retrieval minibatches) and turn them into tensors in tf.data. `indexed_stream` is
the one way they do it: ``Dataset.range(start, stop)`` mapped, in order, through
`tf.numpy_function`. Because element i is a function of i alone, a stream restarted at
``start=i`` (a resumed run) sees exactly the elements an uninterrupted one sees.

Why not `tf.data.Dataset.from_generator`: creating a GeneratorDataset lowers glibc's malloc
trim threshold for the whole process, after which every fresh large tensor is page-faulted in
(several times slower on a CPU), and its iterator is finalised after the interpreter has shut
down, which prints a FAILED_PRECONDITION error at exit.
"""
import numpy as np


def indexed_stream(produce, signature, start=0, stop=None):
    """Dataset of ``produce(i)`` for i = start, start + 1, ... (up to `stop`, exclusive).

    Args:
      produce: callable taking an int and returning a tuple of numpy arrays, one per entry of
        `signature`, of exactly those dtypes. It is called in index order, one element at a
        time, so it may keep state that makes the next index cheap (it must still return the
        same arrays for the same index).
      signature: sequence of `tf.TensorSpec` (shape, possibly with None dims, and dtype).
      start: int >= 0, the first index.
      stop: int > start, or None for an endless stream.

    Returns:
      `tf.data.Dataset` of tuples of tensors with the static shapes of `signature`.

    Example:
      >>> import tensorflow as tf
      >>> ds = indexed_stream(lambda i: (np.full(2, i, np.int32),),
      ...                     [tf.TensorSpec((2,), tf.int32)], start=3, stop=5)
      >>> [x.numpy().tolist() for (x,) in ds]
      [[3, 3], [4, 4]]
    """
    import tensorflow as tf

    signature = tuple(signature)
    dtypes = [spec.dtype for spec in signature]

    def element(index):
        arrays = tf.numpy_function(lambda i: tuple(produce(int(i))), [index], dtypes,
                                   stateful=True)
        for array, spec in zip(arrays, signature):
            array.set_shape(spec.shape)
        return tuple(arrays)

    stop = np.iinfo(np.int64).max if stop is None else stop
    return tf.data.Dataset.range(start, stop).map(element)   # sequential, in index order
