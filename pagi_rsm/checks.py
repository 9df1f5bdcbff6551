"""Argument checks shared by every layer, dataset, callback, component and workflow.

One wording for the same mistake everywhere: ``"<name> must be <what is allowed>, got <value!r>"``.
`pagi_rsm.options.Option` builds on these, so a definition key and the layer argument it feeds
fail with the same message. Nothing here imports TensorFlow.

Example:

```python
from pagi_rsm import checks
checks.check_int("units", 8, low=1)                      # 8
checks.check_number("decay", 0.5, low=0, high=1)         # 0.5
checks.check_choice("norm", "sum", (None, "sum"))        # 'sum'
try:
    checks.check_int("units", True, low=1)
except ValueError as e:
    print(e)                                             # units must be an integer >= 1, got True
```
"""
import math
import numbers


def is_int(value):
    """True for integers (Python or NumPy), never for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """True for real numbers (int or float, Python or NumPy), never for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value):
    """A bound as it reads best: 1.0 -> 1, 0.5 -> 0.5, 1e-11 -> 1e-11."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_range(low=None, high=None, low_open=False, high_open=False):
    """The range part of a message: ``">= 1"``, ``"> 0"``, ``"in [0, 1]"``, ``"in (0, 1]"``."""
    low = None if low is None else _number(low)
    high = None if high is None else _number(high)
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def in_range(value, low=None, high=None, low_open=False, high_open=False):
    """True when `value` lies in the range (bounds as in `describe_range`)."""
    if low is not None and (value <= low if low_open else value < low):
        return False
    if high is not None and (value >= high if high_open else value > high):
        return False
    return True


def _fail(name, allowed, value, nullable):
    if nullable:
        allowed = f"None or {allowed}"
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_int(name, value, low=None, high=None, *, nullable=False):
    """Returns `value` if it is an integer in ``[low, high]`` (bools are not integers).

    Raises:
      ValueError: ``"<name> must be an integer >= <low>, got <value!r>"`` (the range part
        follows `describe_range`; ``"None or ..."`` first when `nullable`).
    """
    if value is None and nullable:
        return None
    if not is_int(value) or not in_range(value, low, high):
        _fail(name, " ".join(filter(None, ["an integer", describe_range(low, high)])), value,
              nullable)
    return int(value)


def check_number(name, value, low=None, high=None, *, low_open=False, high_open=False,
                 nullable=False, finite=True):
    """Returns `value` as a float if it is a real number in the given range.

    Raises:
      ValueError: ``"<name> must be a number in [0, 1], got <value!r>"`` and the like.
    """
    if value is None and nullable:
        return None
    ok = is_number(value) and (not finite or math.isfinite(value)) and in_range(
        value, low, high, low_open, high_open)
    if not ok:
        what = "a finite number" if finite and low is None and high is None else "a number"
        _fail(name, " ".join(filter(None, [what, describe_range(low, high, low_open,
                                                                  high_open)])),
              value, nullable)
    return float(value)


def check_bool(name, value):
    """Returns `value` if it is a bool. Raises ValueError ``"<name> must be True or False"``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`.

    Raises:
      ValueError: ``"<name> must be one of a, b, c, got <value!r>"``.
    """
    if isinstance(value, bool) or not any(value == c and type(value) is type(c)
                                          or (value is None and c is None) for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_string(name, value, *, nullable=False, non_empty=False):
    """Returns `value` if it is a string (non-empty when asked)."""
    if value is None and nullable:
        return None
    if not isinstance(value, str) or (non_empty and not value):
        _fail(name, "a non-empty string" if non_empty else "a string", value, nullable)
    return value


def check_condition(condition, message):
    """Raises ``ValueError(message)`` unless `condition` (for checks across arguments)."""
    if not condition:
        raise ValueError(message)


def check_lengths(prime, steps, num_frames=None):
    """Checks a priming length N and a number of self-looped frames M; returns T = N + M.

    Raises:
      ValueError: N < 2, M < 1, or (given the sequence length) N + M > num_frames, naming the
        argument.
    """
    prime = check_int("prime", prime, 2)
    steps = check_int("steps", steps, 1)
    if num_frames is not None and prime >= num_frames:
        raise ValueError(f"prime must be < the sequence length {num_frames}, got {prime}")
    if num_frames is not None and prime + steps > num_frames:
        raise ValueError(f"prime + steps must be <= the sequence length {num_frames}, got "
                         f"{prime} + {steps}")
    return prime + steps
