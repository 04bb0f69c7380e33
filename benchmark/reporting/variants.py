"""Which runs are one method: a method's name and the settings it ran with, and the comparisons the
paper draws between variants of one method (its ablations, its restoration losses).

A record holds the method's name and all its settings (``method_settings``). Runs of one name
that differ in a setting (``--method-arg loss=mae``) are different methods to the report, never
pooled: each gets its own label, the name followed by the settings that differ from the
registered defaults of that name (``genesis [loss=mae]``; a preset's defaults are its own, so
``genesis-nl`` stays ``genesis-nl``). For a name the registry does not know (a plugin not
installed here) the label names the settings that vary among its runs.

Runs of one task with other task settings (``--task-arg``) are another task to the report
(``ncc [validation_candidates=20]``); runs under a profile with replaced fields (``--profile-arg``,
a speed switch) are of another profile (``quick [classification.epochs=50]``: compared with the
fields the name has in this version, so a record made when they were others shows them); runs
under another transfer protocol are another method (``genesis (linear)``), runs of a 2D network
under another dimensionality another method (``scratch-2d (2.5d)``), and runs on another backbone
than the method's own, or on it with other settings, another method too (``scratch-he on resnet3d
[depth=18]``): none is ever pooled with the defaults.

- Ablations (Models Genesis, fig. 3): a registered method class run with its default settings
  (the combined scheme) and the presets of that class (``register_preset``: the registry
  knows which) in the same results.
- Restoration losses (fig. 8): runs of one name whose settings differ only in ``loss``, with
  at least two losses present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmark.api.backbone import DEFAULT_BACKBONE
from benchmark.api.profiles import PROFILES
from benchmark.api.registry import BACKBONES, METHODS, TASKS, Registry
from benchmark.api.settings import format_value

LOSS_SETTING = "loss"  # the restoration methods' loss setting (benchmark.api.method.restoration_loss)


def canonical(value: Any) -> Any:
    """``value`` as it reads back from a record (a JSON round trip: tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def settings_text(settings: object) -> str | None:
    """A record's ``method_settings`` as canonical JSON text (sorted keys); None if it has none."""
    return json.dumps(canonical(settings), sort_keys=True) if isinstance(settings, dict) else None


UNRECORDED = "unrecorded"  # a field of today's defaults that a run's record does not have


def parse_settings(text: object) -> dict[str, Any]:
    """The settings of :func:`settings_text` back as a dict ({} for a record without them)."""
    return json.loads(text) if isinstance(text, str) else {}


def registered_defaults(name: str, registry: Registry = METHODS, resolved: bool = False) -> dict[str, Any] | None:
    """The default settings of a registered method or preset (or task, or backbone: ``registry``),
    canonical; None for an unknown name. ``resolved``: as a default instance reports them (a backbone
    may resolve a default, such as a ResNet's shortcut type for its depth)."""
    if name not in set(registry.names()):
        return None
    return canonical(registry.create(name).settings() if resolved else registry.defaults(name))


def label(name: str, changed: dict[str, Any]) -> str:
    """``name``, followed by the ``changed`` settings in brackets when there are any."""
    if not changed:
        return name
    return f"{name} [{', '.join(f'{key}={format_value(changed[key])}' for key in sorted(changed))}]"


def profile_fields(fields: object) -> dict[str, Any] | None:
    """A profile's recorded fields (a record's ``identity.profile``) as one flat, canonical dict, a
    schedule's fields under ``classification.batch`` and so on (the names ``--profile-arg`` takes),
    without the name; None for a record without them."""
    if not isinstance(fields, dict):
        return None
    flat: dict[str, Any] = {}
    for key, value in canonical(fields).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        elif key != "name":
            flat[key] = value
    return flat


def profile_defaults(name: str) -> dict[str, Any] | None:
    """The fields of the named built-in profile in this version, as ``profile_fields`` gives them;
    None for a name this version does not have."""
    return profile_fields(PROFILES[name].identity()) if name in PROFILES else None


def changed_settings(runs: pd.DataFrame, kind: str = "method", registry: Registry = METHODS,
                     resolved: bool = False) -> dict[str, dict[str, Any]]:
    """Per run id (``runs``: one row per run with ``run_id``, ``<kind>_name``, ``<kind>_settings``): the
    settings that tell it apart from its name's registered defaults (for ``kind == "profile"``, the
    built-in profile's fields), or, for a name without known defaults, the settings that vary among
    the runs of that name. A run that recorded its settings but not a field this version has (recorded
    before the field existed) shows it as ``unrecorded``: what it ran with is not known, so it is
    never pooled with the runs of today's default. A record with no settings at all (made before
    records kept them) gets the bare name; such a record has no code fingerprint either (``unknown``),
    and the report does not pool it with fingerprinted runs unless ``--select code=`` says so."""
    changed = {}
    for name, own in runs.groupby(f"{kind}_name", sort=False):
        texts = dict(zip(own["run_id"], own[f"{kind}_settings"]))
        settings = {run: parse_settings(text) for run, text in texts.items()}
        defaults = profile_defaults(str(name)) if kind == "profile" else registered_defaults(str(name), registry,
                                                                                           resolved)
        if defaults is not None:
            for run, values in settings.items():
                changed[run] = {k: v for k, v in values.items() if k not in defaults or defaults[k] != v}
                if isinstance(texts[run], str):  # recorded settings (a hand-made record may have none)
                    changed[run].update(dict.fromkeys(defaults.keys() - values.keys(), UNRECORDED))
            continue
        keys = {key for values in settings.values() for key in values}
        varying = {key for key in keys if len({json.dumps(values.get(key), sort_keys=True)
                                                for values in settings.values()}) > 1}
        for run, values in settings.items():
            changed[run] = {key: values[key] for key in varying if key in values}
    return changed


def label_methods(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``method`` the label of each run's method, its settings and its protocol when not
    ``full``, ``task`` the label of its task and its settings, and ``profile`` that of its profile and
    the fields it replaced (``method_name``, ``task_name`` and ``profile_name`` keep the recorded names)."""
    if table.empty:
        return table
    runs = table.drop_duplicates("run_id")
    changed = changed_settings(runs)
    labels = backbone_labels(runs)
    backbones = {run: "" if labels[run] == default_backbone_of(name) else f" on {labels[run]}"
                 for run, name in zip(runs["run_id"], runs["method_name"])}
    columns = zip(runs["run_id"], runs["method_name"], runs["dims"], runs["protocol"])
    methods = {run: label(name, changed[run]) + backbones[run] + how_transferred(dims, protocol)
               for run, name, dims, protocol in columns}
    changed = changed_settings(runs, "task", TASKS)
    tasks = {run: label(name, changed[run]) for run, name in zip(runs["run_id"], runs["task_name"])}
    changed = changed_settings(runs, "profile")
    profiles = {run: label(name, changed[run]) for run, name in zip(runs["run_id"], runs["profile_name"])}
    return table.assign(method=table["run_id"].map(methods), task=table["run_id"].map(tasks),
                        profile=table["run_id"].map(profiles))


def how_transferred(dims: str, protocol: str) -> str:
    """`` (2.5d, linear)``: the dimensionality when not 3d and the protocol when not full, or nothing."""
    shown = [text for text, default in ((dims, "3d"), (protocol, "full")) if text != default]
    return f" ({', '.join(shown)})" if shown else ""


def default_backbone_of(method: str) -> str:
    """A registered method's default backbone (its first declared); the suite's default for others."""
    return METHODS.get(method).default_backbone() if method in set(METHODS.names()) else DEFAULT_BACKBONE


def backbone_labels(runs: pd.DataFrame) -> dict[str, str]:
    """Per run id: its backbone's name with the settings that differ from its defaults (``resnet3d [depth=18]``)."""
    changed = changed_settings(runs, "backbone", BACKBONES, resolved=True)
    return {run: label(name, changed[run]) for run, name in zip(runs["run_id"], runs["backbone_name"])}


# --------------------------------------------------------------------------- ablations


@dataclass(frozen=True)
class Ablations:
    """A method class's default instance (the combined scheme) and its presets present in the results."""

    combined: str
    description: str  # the combined scheme's description (the registry's)
    ablations: dict[str, str]  # preset name -> its description


def ablation_sets(methods: list[str]) -> list[Ablations]:
    """Per registered class run with its default settings (label = its name): its presets among
    ``methods`` (labels: a preset run with its own settings is labelled with its name alone)."""
    registered = set(METHODS.names())
    present = [m for m in methods if m in registered]
    sets = []
    for combined in present:
        if METHODS.preset(combined) is not None:
            continue
        cls = METHODS.get(combined)
        ablations = {name: METHODS.description(name) for name in sorted(present)
                     if (preset := METHODS.preset(name)) is not None and preset.cls is cls}
        if ablations:
            sets.append(Ablations(combined, METHODS.description(combined), ablations))
    return sets


# --------------------------------------------------------------------------- restoration losses


@dataclass(frozen=True)
class LossComparison:
    """Variants of one method that differ only in their loss: label -> loss, in the order of the losses."""

    method: str  # the recorded name
    variants: dict[str, str]


def loss_comparisons(table: pd.DataFrame) -> list[LossComparison]:
    """Groups of runs of one name whose settings are equal but for ``loss``, with 2 or more losses."""
    runs = table.drop_duplicates("run_id")
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for name, method, text in zip(runs["method_name"], runs["method"], runs["method_settings"]):
        settings = parse_settings(text)
        if LOSS_SETTING not in settings:
            continue
        rest = json.dumps({k: v for k, v in settings.items() if k != LOSS_SETTING}, sort_keys=True)
        groups.setdefault((str(name), rest), {})[str(method)] = format_value(settings[LOSS_SETTING])
    comparisons = []
    for (name, _), variants in groups.items():
        if len(set(variants.values())) >= 2:
            ordered = dict(sorted(variants.items(), key=lambda item: (item[1], item[0])))
            comparisons.append(LossComparison(name, ordered))
    return sorted(comparisons, key=lambda comparison: (comparison.method, list(comparison.variants)))
