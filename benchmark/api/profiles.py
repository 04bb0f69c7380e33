"""Profiles: every size and schedule a run depends on, fixed under one name.

``smoke`` is for CI (each run well under a minute on 2 CPU cores), ``quick`` is the
default (the whole default command in a few minutes on 2 cores), ``paper`` is the
Models Genesis setting (64x64x32 cubes, full width, its optimisers; meant for a GPU).
Cube sizes are written (z, y, x) = slices, rows, columns: the paper's 64x64x32 (x, y, z)
cube is (32, 64, 64) here. Any field can be replaced for one run (``--profile-arg KEY=VALUE``,
``parse_overrides``); the run id covers the values used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from benchmark.api.settings import as_number, parse, unknown_key
from benchmark.errors import UserError

PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("paper", "adam")
SCHEDULES = ("classification", "segmentation")
LR_DECAYS = ("none", "cosine")
# the least value of each count a profile holds (a schedule's fields by their own names)
LEAST = {"width": 1, "pretrain_batch": 1, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 1, "pretrain_patience": 0,
         "pretrain_val_batches": 1, "cubes_per_scan": 1, "batch": 1, "epochs": 1, "steps_per_epoch": 1,
         "patience": 0}


@dataclass(frozen=True)
class Schedule:
    """How a target model is fine-tuned: batch size, epoch length, stopping, learning rate (Adam) and
    its decay: ``none`` keeps it constant (the paper's), ``cosine`` anneals it to zero over ``epochs``
    (stepped once an epoch). A short schedule needs the decay: at a constant rate its last epochs
    still jump about, so the epoch early stopping keeps, and with it the score, varies from seed
    to seed far more than the model's quality does (README, "Profiles")."""

    batch: int
    epochs: int
    steps_per_epoch: int
    patience: int
    lr: float = 1e-3
    lr_decay: str = "none"

    def __post_init__(self) -> None:
        numbers_as_declared(self)


@dataclass(frozen=True)
class Profile:
    name: str
    cube: tuple[int, int, int]
    width: int
    # pretraining
    pretrain_batch: int
    pretrain_epochs: int
    pretrain_steps_per_epoch: int
    pretrain_patience: int
    pretrain_val_batches: int
    pretrain_optimizer: str  # "paper": each method's own optimiser; else "adam"
    pretrain_lr: float
    cubes_per_scan: int
    # fine-tuning, per task kind: a classifier step (encoder only) costs far less than a U-Net step
    classification: Schedule
    segmentation: Schedule
    sliding_window_overlap: float
    # pretraining speed switches (off by default: each changes the numbers, and its effect on the
    # scores is to be measured before a profile turns it on; see docs/performance.md). All but
    # loader_workers can change the numbers.
    pretrain_device_transforms: bool = False  # batched torch transforms on the training device
    pretrain_precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    pretrain_channels_last: bool = False  # channels_last_3d memory format
    pretrain_compile: bool = False  # torch.compile the pretext model
    loader_workers: int = 0  # data-loader worker processes (never changes the numbers)

    def __post_init__(self) -> None:
        numbers_as_declared(self)
        if self.pretrain_precision not in PRECISIONS:
            raise UserError(f"precision '{self.pretrain_precision}': expected one of {', '.join(PRECISIONS)}")
        if self.loader_workers < 0:
            raise UserError(f"workers {self.loader_workers}: must be >= 0")
        if self.pretrain_optimizer not in OPTIMIZERS:
            raise UserError(f"pretrain_optimizer '{self.pretrain_optimizer}': expected one of {', '.join(OPTIMIZERS)}")
        if len(self.cube) != 3 or any(side < 8 or side % 8 for side in self.cube):
            raise UserError(f"cube {self.cube}: three sides, each a multiple of 8 (the U-Net pools three times)")
        if not 0.0 <= self.sliding_window_overlap < 1.0:
            raise UserError(f"sliding_window_overlap {self.sliding_window_overlap}: must be in [0, 1)")
        for key, value in editable_fields(self).items():
            field = key.split(".")[-1]
            if field in LEAST and value < LEAST[field]:
                raise UserError(f"{key} {value}: must be >= {LEAST[field]}")
            if field in ("lr", "pretrain_lr") and not value > 0:
                raise UserError(f"{key} {value}: must be > 0")
            if field == "lr_decay" and value not in LR_DECAYS:
                raise UserError(f"{key} '{value}': expected one of {', '.join(LR_DECAYS)}")

    def schedule(self, kind: str) -> Schedule:
        return self.classification if kind == "classification" else self.segmentation

    def as_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The fields that can change a run's numbers (all but the loader's worker count)."""
        return {k: v for k, v in self.as_dict().items() if k != "loader_workers"}


def numbers_as_declared(record: Profile | Schedule) -> None:
    """Each number field of a frozen ``record`` made the kind of number it is declared as (an ``int``
    given for a ``float``, say, from a preset's JSON), so that one profile has one identity."""
    for field in fields(record):
        if field.type in ("int", "float"):
            value = getattr(record, field.name)
            try:
                object.__setattr__(record, field.name, as_number(value, 0.0 if field.type == "float" else 0))
            except ValueError as error:
                raise UserError(f"{field.name} {value}: {error}") from error


def editable_fields(profile: Profile) -> dict[str, Any]:
    """Every field a user may replace, with its value in ``profile``; a schedule's fields are
    ``classification.batch`` and so on. The name is not one of them (that is ``--profile``)."""
    values: dict[str, Any] = {}
    for field in fields(profile):
        value = getattr(profile, field.name)
        if field.name in SCHEDULES:
            values.update({f"{field.name}.{k}": v for k, v in asdict(value).items()})
        elif field.name != "name":
            values[field.name] = value
    return values


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", cube=(16, 32, 32), width=4,
        pretrain_batch=4, pretrain_epochs=2, pretrain_steps_per_epoch=4, pretrain_patience=2,
        pretrain_val_batches=1, pretrain_optimizer="adam", pretrain_lr=1e-3, cubes_per_scan=8,
        classification=Schedule(batch=4, epochs=3, steps_per_epoch=4, patience=3, lr_decay="cosine"),
        segmentation=Schedule(batch=4, epochs=3, steps_per_epoch=4, patience=3, lr_decay="cosine"),
        sliding_window_overlap=0.25,
    ),
    "quick": Profile(
        name="quick", cube=(16, 32, 32), width=8,
        pretrain_batch=8, pretrain_epochs=12, pretrain_steps_per_epoch=25, pretrain_patience=4,
        pretrain_val_batches=4, pretrain_optimizer="adam", pretrain_lr=1e-3, cubes_per_scan=16,
        classification=Schedule(batch=8, epochs=30, steps_per_epoch=25, patience=30, lr_decay="cosine"),
        segmentation=Schedule(batch=4, epochs=30, steps_per_epoch=10, patience=30, lr_decay="cosine"),
        sliding_window_overlap=0.25,
    ),
    "paper": Profile(
        name="paper", cube=(32, 64, 64), width=32,
        pretrain_batch=6, pretrain_epochs=10000, pretrain_steps_per_epoch=100, pretrain_patience=50,
        pretrain_val_batches=50, pretrain_optimizer="paper", pretrain_lr=1.0, cubes_per_scan=32,
        classification=Schedule(batch=6, epochs=10000, steps_per_epoch=100, patience=50),
        segmentation=Schedule(batch=6, epochs=10000, steps_per_epoch=100, patience=50),
        sliding_window_overlap=0.5,
    ),
}


def get_profile(name: str, **switches: Any) -> Profile:
    """The named profile, with the given fields replaced (the command line's speed switches and
    ``--profile-arg`` values, see ``parse_overrides``)."""
    if name not in PROFILES:
        raise UserError(f"unknown profile '{name}'; known: {', '.join(PROFILES)}")
    return replace(PROFILES[name], **switches) if switches else PROFILES[name]


def parse_overrides(name: str, assignments: Mapping[str, str]) -> dict[str, Any]:
    """The fields of profile ``name`` to replace, from ``{field: text}``: each value parsed to the type
    of the profile's own, a schedule's fields gathered into a new schedule
    (``{"classification.batch": "2"}`` -> ``{"classification": Schedule(batch=2, ...)}``), ready for
    ``get_profile(name, **overrides)``, which checks the values. UserError for an unknown field or
    a value that does not parse."""
    profile = get_profile(name)
    known = editable_fields(profile)
    overrides: dict[str, Any] = {}
    schedules: dict[str, dict[str, Any]] = {}
    for key, text in assignments.items():
        if key not in known:
            raise unknown_key(f"profile '{name}'", key, known, noun="field")
        try:
            value = parse(text, known[key])
        except ValueError as error:
            raise UserError(f"profile '{name}', field {key}={text}: {error}") from error
        kind, dot, field = key.partition(".")
        if dot:
            schedules.setdefault(kind, {})[field] = value
        else:
            overrides[key] = value
    overrides.update({kind: replace(getattr(profile, kind), **values) for kind, values in schedules.items()})
    return overrides
