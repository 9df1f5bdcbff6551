"""Old argument and class names, kept working for one release with a DeprecationWarning.

Release 0.2 renamed arguments that a reader could misread (docs/options.md lists them):
`RSMCell(sparsity=)` is `active_groups`, `RSMCell(boost_factor=)` is `boost_strength`,
`SparseDense/SparseConv2D(sparsity=)` is `weight_sparsity`, `FastWeightsRNNLN` is
`FastWeightsCell`. Definitions accept the old names through the options' aliases instead.
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
