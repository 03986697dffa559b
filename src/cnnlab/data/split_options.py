"""What a split is asked for: `SplitOptions`, their defaults, and each class's counts.

Kept apart from splits.py (the assignment) so that the command line can show the defaults
without importing Pillow. The meaning of every option is in splits.py's docstring.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from cnnlab.errors import UserError

SPLIT_NAMES = ("train", "val", "test")
SPLIT_KINDS = ("stratified", "tutorial")
DEFAULT_KIND = "stratified"
STRATIFIED_DEFAULTS = {"train": None, "val": 0.1, "test": 0.1}  # None: all the rest
TUTORIAL_DEFAULTS = {"train": 2048, "val": 512, "test": 0}  # per class
DEFAULT_SEED = 0


@dataclass(frozen=True)
class SplitOptions:
    """What the user asked for; None means "not chosen" (see `resolved` for the defaults)."""

    kind: str | None = None  # None: stratified
    # stratified: a fraction in (0, 1) of each class, or a whole-number total over all classes;
    # train None = all the rest. tutorial: whole numbers per class.
    train: int | float | None = None
    val: int | float | None = None
    test: int | float | None = None
    seed: int | None = None

    def chosen(self) -> bool:
        """Whether any split option was given (otherwise prepare keeps an existing cache's split)."""
        return any(value is not None for value in asdict(self).values())

    def resolved(self) -> "SplitOptions":
        """Fill in each kind's defaults so that the stored options say exactly what was asked."""
        kind = DEFAULT_KIND if self.kind is None else self.kind
        if kind not in SPLIT_KINDS:
            raise UserError(f"unknown split {kind!r}; choose one of {', '.join(SPLIT_KINDS)}")
        defaults = TUTORIAL_DEFAULTS if kind == "tutorial" else STRATIFIED_DEFAULTS
        values = {name: defaults[name] if getattr(self, name) is None else _number(getattr(self, name))
                  for name in SPLIT_NAMES}
        for name, value in values.items():
            _check_value(name, value, kind)
        fractions = [value for value in values.values() if isinstance(value, float)]
        if values["train"] is None and sum(fractions) >= 1 or sum(fractions) > 1 + 1e-9:
            raise UserError(f"--val {values['val']} and --test {values['test']}"
                            + (f" and --train {values['train']}" if values["train"] is not None else "")
                            + " add up to more than all the photos; lower them (fractions of each class must sum "
                              "below 1, leaving photos to train on)")
        seed = DEFAULT_SEED if self.seed is None else self.seed
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UserError(f"--seed must be a whole number, got {seed!r}")
        return SplitOptions(kind, values["train"], values["val"], values["test"], seed)

    def to_dict(self) -> dict:
        return asdict(self)

    def flags(self) -> str:
        """The command-line flags that ask for these (resolved) options."""
        words = [f"--split {self.kind}"] + [f"--{name} {getattr(self, name)}" for name in ("train", "val", "test")
                                            if getattr(self, name) is not None]
        return " ".join(words + ([f"--seed {self.seed}"] if self.seed else []))


def _number(value):
    """NumPy's integers and floats as Python's (a count stays a count, a fraction a fraction)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _check_value(name: str, value, kind: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"--{name} must be a number, got {value!r}")
    if isinstance(value, float):
        if kind == "tutorial":
            raise UserError(f"--{name} {value}: the tutorial split takes whole numbers per class; "
                            "pass a count, or --split stratified for fractions")
        if not 0 < value < 1:
            raise UserError(f"--{name} {value}: a fraction must be between 0 and 1 (e.g. 0.2), "
                            "and a count a whole number (e.g. 500)")
    elif value < 0:
        raise UserError(f"--{name} must be >= 0, got {value}")


def parse_split_value(text: str) -> int | float:
    """A --train/--val/--test value: '500' is a count, '0.2' a fraction (checked by `resolved`)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{text!r} is neither a count (e.g. 500) nor a fraction (e.g. 0.2)") from None
    if not math.isfinite(value):
        raise UserError(f"{text!r} is neither a count (e.g. 500) nor a fraction (e.g. 0.2)")
    return value


@dataclass(frozen=True)
class ClassCounts:
    """One class's stratified counts: validation and test exactly, train exactly or None (the rest)."""

    val: int
    test: int
    train: int | None

    def needed(self) -> int:
        return self.val + self.test + (1 if self.train is None else self.train)


def stratified_counts(options: SplitOptions, class_sizes: dict[str, int]) -> dict[str, ClassCounts]:
    """Each class's counts for resolved stratified options, from the photos found in it."""
    classes = sorted(class_sizes)

    def count(value, index: int, size: int) -> int | None:
        if value is None:
            return None
        if isinstance(value, float):  # a fraction of this class, half up, at least one
            return max(1, math.floor(value * size + 0.5))
        share, extra = divmod(value, len(classes))  # a total, shared equally
        return share + (1 if index < extra else 0)

    counts = {}
    for index, label in enumerate(classes):
        size = class_sizes[label]
        val, test, train = (count(getattr(options, name), index, size) for name in ("val", "test", "train"))
        if isinstance(options.train, float):  # rounding up must not ask for more than is left
            train = max(1, min(train, size - val - test))
        counts[label] = ClassCounts(val, test, train)
    return counts


