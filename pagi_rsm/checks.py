"""Argument checks shared across the package: one wording for the same mistake everywhere."""
import numbers


def check_int(name, value, low):
    """Returns `value` if it is an integer >= `low` (bools are not integers), else raises.

    Raises:
      ValueError: ``"<name> must be an integer >= <low>, got <value!r>"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value
