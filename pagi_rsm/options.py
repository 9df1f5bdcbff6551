"""Declared options: each option of a workflow, component or layer is declared once.

An `Option` holds a name, a default, the allowed values (type, range or choices) and one line
of help. An `Options` set, declared once per workflow (`Workflow.options`), per component (its
``options`` class attribute, in a module that does not import TensorFlow, see
`pagi_rsm.hparams`) and per RSM layer, drives everything that needs to know about the option:

- definition validation and its error messages (`Options.resolve`), used by
  `pagi_rsm.definitions`;
- the layer's or component's own argument checks (`Options.check`), so a definition key and the
  argument it feeds fail with the same message;
- `pagi show` (the resolved values) and `pagi run --help` (`Options.help_lines`);
- the reference table in docs/options.md (`Options.markdown`; tests/test_options.py keeps it
  current).

Names that an earlier release or the original pagi code used are accepted in definitions
through each option's ``aliases`` (one translation table: `Options.aliases`), and translated to
the declared name.

Example:

```python
from pagi_rsm.options import Option, Options
opts = Options(
    Option("units", 8, "hidden units", low=1),
    Option("norm", "sum", "input normalisation", choices=(None, "sum"), nullable=True),
    Option("rate", 0.5, "keep rate", low=0, high=1, low_open=True),
)
print(opts.resolve([("my.yaml", {"units": 16})]))   # {'units': 16, 'norm': 'sum', 'rate': 0.5}
try:
    opts.resolve([("my.yaml", {"rate": 0})], section="hparams_override")
except ValueError as e:
    print(e)       # my.yaml: hparams_override.rate must be a number in (0, 1], got 0
```
"""
import copy
import dataclasses
import math

from pagi_rsm import checks

_KINDS = ("int", "float", "bool", "str", "list", "mapping", "any")
_KIND_OF = {bool: "bool", int: "int", float: "float", str: "str", list: "list", tuple: "list",
            dict: "mapping"}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "a boolean (true/false)",
               "str": "a string", "list": "a list", "mapping": "a mapping"}


class OptionError(ValueError):
    """A value or key that an option declaration does not allow. The message says which."""


class _Required:
    def __repr__(self):
        return "REQUIRED"

    def __deepcopy__(self, memo):
        return self


REQUIRED = _Required()
"""Default of an option that has no default (the caller or a workflow must set it)."""


def type_name(value):
    """How a value's type reads in a message: "an integer", "a string", "null", ..."""
    if value is None:
        return "null"
    kind = _KIND_OF.get(type(value))
    if kind is None and checks.is_int(value):
        kind = "int"
    elif kind is None and checks.is_number(value):
        kind = "float"
    return _TYPE_WORDS.get(kind, type(value).__name__)


@dataclasses.dataclass(frozen=True)
class Option:
    """One declared option.

    Args:
      name: the option's name (a definition key and, for layers, the argument name).
      default: its default; `REQUIRED` when it has none.
      help: one line saying what it does.
      kind: "int", "float", "bool", "str", "list", "mapping" or "any"; inferred from `default`
        when not given (a None default needs it).
      low, high, low_open, high_open: the allowed range of a number (or of each item of a list).
      choices: the allowed values (strings, None allowed among them).
      nullable: None is allowed (implied when None is among `choices` or is the default).
      items: kind of each list item ("int", "float", "str", "any").
      length: exact list length (None: any).
      per_layer: the value is one per layer of a stack: a scalar or a list with one entry
        (broadcast) or one per layer; `kind`, range and choices apply to each entry.
      aliases: other names accepted in definitions (the original's or an earlier release's).
      flag: also a `pagi run` flag (experiment options only).
      describe: the allowed values in words, when the declared range says it badly.
      non_empty: a string option must not be empty.
      convert: a function applied to a value before it is checked (e.g. true -> "true").
    """
    name: str
    default: object = REQUIRED
    help: str = ""
    kind: str = None
    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = None
    nullable: bool = None
    items: str = None
    length: int = None
    per_layer: bool = False
    aliases: tuple = ()
    flag: bool = False
    describe: str = None
    non_empty: bool = False
    convert: object = None

    def __post_init__(self):
        kind = self.kind
        if kind is None:
            sample = self.default
            if self.per_layer and isinstance(sample, (list, tuple)) and sample:
                sample = sample[0]
            kind = _KIND_OF.get(type(sample))
            if kind is None:
                kind = "str" if self.choices and all(
                    isinstance(c, str) or c is None for c in self.choices) else "any"
        if kind not in _KINDS:
            raise ValueError(f"option {self.name!r}: kind must be one of {', '.join(_KINDS)}, "
                             f"got {kind!r}")
        object.__setattr__(self, "kind", kind)
        if self.nullable is None:
            object.__setattr__(self, "nullable", self.default is None or (
                self.choices is not None and None in self.choices))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    # --- describing ------------------------------------------------------------------------------

    def _scalar_allowed(self, kind, nullable=False):
        if nullable and self.nullable and self.choices is None and not self.describe:
            return "None or " + self._scalar_allowed(kind)
        if self.describe:
            return self.describe
        if self.choices is not None:
            shown = ["null" if c is None else str(c) for c in self.choices]
            return "one of " + ", ".join(shown)
        rng = checks.describe_range(self.low, self.high, self.low_open, self.high_open)
        word = _TYPE_WORDS.get(kind, "any value")
        if kind == "str" and self.non_empty:
            word = "a non-empty string"
        return " ".join(filter(None, [word, rng]))

    def _type_error(self, kind, value, where, python=False):
        """The message for a value of the wrong type (numbers: with their range)."""
        if kind == "bool" and python:
            return OptionError(f"{where} must be True or False, got {value!r}")
        words = self._scalar_allowed(kind, True) if kind in ("int", "float") or self.describe \
            else _TYPE_WORDS.get(kind, "set")
        if kind == "str" and self.non_empty and not self.describe:
            words = "a non-empty string"
        return OptionError(f"{where} must be {words}, got {value!r} ({type_name(value)})")

    def allowed(self):
        """What the option accepts, as a phrase: "an integer >= 1", "one of max, min", ..."""
        if self.kind == "list" and self.items:
            words = self._scalar_allowed(self.items).replace("an integer", "integers").replace(
                "a number", "numbers").replace("a string", "strings")
            text = "a list" + (f" of {self.length}" if self.length else "") + " of " + words
        elif self.per_layer:
            text = self._scalar_allowed(self.kind) + ", or a list of one per layer"
        else:
            text = self._scalar_allowed(self.kind)
        if self.nullable and self.choices is None:
            text = "None or " + text
        return text

    # --- checking --------------------------------------------------------------------------------

    def _scalar(self, value, kind, where, python=False):
        """`value` checked against a scalar `kind` and the declared range/choices."""
        if value is None:
            if self.nullable:
                return None
            raise self._type_error(kind, value, where)
        if kind == "any":
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise self._type_error(kind, value, where, python)
            return value
        if kind == "int":
            if not checks.is_int(value):
                raise self._type_error(kind, value, where)
            value = int(value)
        elif kind == "float":
            if isinstance(value, str):  # YAML 1.1 reads 5e-4 as a string
                try:
                    value = float(value)
                except ValueError:
                    pass
            if not checks.is_number(value):
                raise self._type_error(kind, value, where)
            value = float(value)
            if not math.isfinite(value):
                raise OptionError(f"{where} must be a finite number, got {value!r}")
        elif kind == "str":
            if not isinstance(value, str) or (self.non_empty and not value):
                raise self._type_error(kind, value, where)
        elif kind == "mapping":
            if not isinstance(value, dict):
                raise self._type_error(kind, value, where)
            return value
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{where} must be {self._scalar_allowed(kind)}, got {value!r}")
        if kind in ("int", "float") and not checks.in_range(value, self.low, self.high,
                                                            self.low_open, self.high_open):
            raise OptionError(f"{where} must be {self._scalar_allowed(kind, True)}, "
                              f"got {value!r}")
        return value

    def check(self, value, where=None, python=False):
        """Returns `value` checked (ints accepted for floats, a number spelt as a string too).

        Per-layer options keep their form: a scalar (for every layer) or a list.

        `python` words messages for a Python caller (True/False) rather than a definition.

        Raises:
          OptionError naming `where` (default: the option's name) and what is allowed.
        """
        where = where or self.name
        if self.convert is not None:
            value = self.convert(value)
        if self.per_layer:
            if not isinstance(value, (list, tuple)):
                return self._scalar(value, self.kind, where, python)
            if not value:
                raise OptionError(f"{where} must be {self.allowed()}, got []")
            return [self._scalar(v, self.kind, f"{where}[{i}]" if len(value) > 1 else where)
                    for i, v in enumerate(value)]
        if self.kind == "list":
            if value is None and self.nullable:
                return None
            if not isinstance(value, (list, tuple)):
                raise OptionError(f"{where} must be {self.allowed()}, got {value!r} "
                                  f"({type_name(value)})")
            if self.length is not None and len(value) != self.length:
                raise OptionError(f"{where} must be {self.allowed()}, got {value!r}")
            if self.items:
                return [self._scalar(v, self.items, f"{where}[{i}]")
                        for i, v in enumerate(value)]
            return list(value)
        return self._scalar(value, self.kind, where, python)

    def default_value(self):
        """A fresh copy of the default (per-layer options: a one-entry list)."""
        if self.per_layer and not isinstance(self.default, (list, tuple)):
            return [self.default]
        return copy.deepcopy(self.default)


class Options:
    """An ordered set of `Option` declarations, with cross-option checks.

    Args:
      *options: `Option` declarations (names unique).
      checks: callables ``check(values)`` run on the complete, resolved mapping; each raises
        ValueError naming the options when a combination is not allowed.
    """

    def __init__(self, *options, checks=()):
        self._options = {}
        for option in options:
            if not isinstance(option, Option):
                raise TypeError(f"Options takes Option declarations, got {option!r}")
            if option.name in self._options:
                raise ValueError(f"option {option.name!r} declared twice")
            self._options[option.name] = option
        self.checks = tuple(checks)
        self.aliases = {}
        for option in options:
            for alias in option.aliases:
                if alias in self._options or alias in self.aliases:
                    raise ValueError(f"alias {alias!r} of {option.name!r} is already a name")
                self.aliases[alias] = option.name

    # --- the set ---------------------------------------------------------------------------------

    def __iter__(self):  # a mapping of name -> Option: iteration gives the names
        return iter(self._options)

    def values(self):
        return self._options.values()

    def items(self):
        return self._options.items()

    def __len__(self):
        return len(self._options)

    def __contains__(self, name):
        return name in self._options

    def __getitem__(self, name):
        return self._options[name]

    def names(self):
        return list(self._options)

    def extend(self, *options, checks=()):
        """A new set with `options` added; an option with an existing name replaces it."""
        merged = dict(self._options)
        for option in options:
            merged[option.name] = option
        return Options(*merged.values(), checks=self.checks + tuple(checks))

    def with_defaults(self, **defaults):
        """A new set whose options named in `defaults` have those defaults instead."""
        unknown = sorted(set(defaults) - set(self._options))
        if unknown:
            raise ValueError(f"with_defaults: unknown options {unknown}")
        return Options(*[dataclasses.replace(o, default=defaults[o.name])
                         if o.name in defaults else o for o in self.values()],
                       checks=self.checks)

    def without(self, *names):
        """A new set without the options `names`."""
        return Options(*[o for o in self.values() if o.name not in names], checks=self.checks)

    def defaults(self):
        """``{name: default}`` of every option (fresh copies; None for a required one)."""
        return {o.name: None if o.default is REQUIRED else o.default_value()
                for o in self.values()}

    # --- checking --------------------------------------------------------------------------------

    def canonical(self, key):
        """The declared name of `key` (translating an alias), or None if unknown."""
        if key in self._options:
            return key
        return self.aliases.get(key)

    def _unknown(self, key, where, section):
        prefix = f"{where}: " if where else ""
        label = f" in {section}" if section else ""
        return OptionError(f"{prefix}unknown key {key!r}{label}; accepted keys: "
                           f"{', '.join(sorted(self._options))}")

    def resolve(self, layers, section="", check_required=True):
        """Defaults overridden by each mapping in `layers`, every key and value checked.

        Args:
          layers: ``[(where, mapping)]``, later mappings win; `where` names the source in
            messages (a file, "command line", ...).
          section: the definition section in messages (e.g. "hparams_override").
          check_required: raise when an option without a default is still unset (else it
            is None, for a workflow to fill in).

        Returns:
          The resolved ``{name: value}`` for every declared option.

        Raises:
          OptionError: an unknown key (the message lists the accepted ones), a value the
            declaration does not allow, or a combination a cross-option check rejects.
        """
        values = {o.name: o.default_value() for o in self.values()}
        label = f"{section}." if section else ""
        for where, mapping in layers:
            for key, value in (mapping or {}).items():
                name = self.canonical(key)
                if name is None:
                    raise self._unknown(key, where, section)
                prefix = f"{where}: " if where else ""
                values[name] = self._options[name].check(value, f"{prefix}{label}{key}")
        missing = [k for k, v in values.items() if v is REQUIRED]
        if missing and check_required:
            raise OptionError(f"{label}{missing[0]} must be set "
                              f"({self._options[missing[0]].help})")
        values.update({k: None for k in missing})
        self.check_combinations(values, prefix=label)
        return values

    def check_combinations(self, values, prefix=""):
        """Runs the cross-option checks on a resolved mapping."""
        for check in self.checks:
            try:
                check(values)
            except OptionError:
                raise
            except ValueError as e:
                raise OptionError(f"{prefix}{e}" if prefix and not str(e).startswith(prefix)
                                  else str(e)) from None

    def check(self, values):
        """Checks a complete mapping of argument values (a layer's constructor arguments).

        Unlike `resolve`, messages name the bare argument (``"groups must be ..."``) and every
        key must be declared. Returns the checked values.
        """
        out = {}
        for key, value in values.items():
            if key not in self._options:
                raise self._unknown(key, "", "")
            out[key] = self._options[key].check(value, key, python=True)
        self.check_combinations(out)
        return out

    # --- showing ---------------------------------------------------------------------------------

    def help_lines(self, width=92, indent="  "):
        """``--name`` style help for each option (used by `pagi run --help`)."""
        import textwrap
        lines = []
        for o in self.values():
            default = "" if o.default is REQUIRED else f" (default: {_show(o.default)})"
            lines.append(f"{indent}{o.name}: {o.allowed()}{default}")
            lines.extend(textwrap.wrap(o.help, width=width, initial_indent=indent + "    ",
                                       subsequent_indent=indent + "    "))
        return lines

    def markdown(self):
        """The options as a markdown table: name, default, allowed values, meaning."""
        rows = ["| option | default | allowed | meaning |", "|---|---|---|---|"]
        for o in self.values():
            default = "(required)" if o.default is REQUIRED else f"`{_show(o.default)}`"
            name = f"`{o.name}`" + (
                " (also " + ", ".join(f"`{a}`" for a in o.aliases) + ")" if o.aliases else "")
            rows.append(f"| {name} | {default} | {o.allowed()} | {o.help} |".replace(
                "\n", " "))
        return "\n".join(rows)


def _show(value):
    """A default as it would be written in a YAML definition."""
    import json
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)
