"""Old argument and class names, kept working for one release with a DeprecationWarning.

Release 0.2 renamed what a reader could misread (docs/options.md lists the option names):
`RSMCell(sparsity=)` is `active_groups` (`sparsity` now means one thing in the package: the
fraction of zero weights of `SparseDense`/`SparseConv2D`, as in nupic.torch),
`RSMCell(boost_factor=)` is `boost_strength` (as in `KWinners`), `FastWeightsRNNLN` is
`FastWeightsCell` (a cell, not an RNN layer). Definitions accept the old names through the
options' aliases instead.
"""
import warnings

_NOT_GIVEN = object()


def deprecated_alias(kwargs, old, new, value, default=None):
    """Takes the deprecated argument `old` out of `kwargs`; returns the value of `new`.

    Args:
      kwargs: the caller's ``**kwargs`` (modified: `old` is removed).
      old, new: the deprecated and the current argument names.
      value: the value the caller received for `new`.
      default: `new`'s default (a value equal to it counts as "not given").

    Raises:
      TypeError: both names given with different values.
    """
    old_value = kwargs.pop(old, _NOT_GIVEN)
    if old_value is _NOT_GIVEN:
        return value
    warnings.warn(f"argument {old!r} is deprecated; use {new!r}", DeprecationWarning,
                  stacklevel=3)
    if value is not None and value != default and value != old_value:
        raise TypeError(f"got both {new}={value!r} and its deprecated name {old}="
                        f"{old_value!r}; pass only {new}")
    return old_value


def deprecated_name(old, new, obj):
    """Returns `obj` (the object now called `new`), warning that `old` is deprecated."""
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)
    return obj
