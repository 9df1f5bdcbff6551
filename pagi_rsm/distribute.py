"""Small helpers for code that runs inside a replica under `tf.distribute` (or without one)."""
import tensorflow as tf


def replica_sum(values):
    """Sums `values` (a tensor or a list of tensors) over the replicas in sync.

    Inside a replica of a multi-replica strategy this all-reduces; elsewhere (default strategy,
    one replica, cross-replica context) it returns the values unchanged. Statistics of the
    forward pass (duty cycles, usage counts, windowed accuracies) use it so that they are
    computed over the global batch.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return values
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


def replica_slot():
    """(replica id, number of replicas) of the current replica context, (0, 1) outside one."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return tf.constant(0), 1
    return tf.cast(ctx.replica_id_in_sync_group, tf.int32), ctx.num_replicas_in_sync
