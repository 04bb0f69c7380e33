"""Supervised pretraining on a labelled source task: the in-suite counterpart of the fully
supervised pretrained models of Table 3 (MedicalNet, NiftyNet), trained with no download.

The backbone is trained on the source task's *training* split (its validation split for early
stopping; its test split never), with the fine-tuning schedule of the profile for that task's
kind, and then transferred to the target task like any pretrained checkpoint: the whole
encoder-decoder from a segmentation source, the encoder from a classification source. The harness
refuses the target task itself as the source, and a source whose training patients include any
of the target's test patients (matched by patient id, ``Case.group``: two datasets that name the
same patients differently, such as LIDC-IDRI and LUNA16, cannot be matched this way, so keep
such pairs apart yourself).

Settings: ``source`` (a task name, e.g. ``lcs``), ``source_root`` (its dataset folder; empty: its
built-in phantom). ``benchmark run --method supervised --method-arg source=lcs --task ncs``.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.api.backbone import ANY_BACKBONE
from benchmark.api.method import Method
from benchmark.api.registry import METHODS, TASKS


@METHODS.register
class Supervised(Method):
    name = "supervised"
    description = "Supervised pretraining on a labelled source task's training split (--method-arg source=TASK)"
    backbones = (ANY_BACKBONE,)
    spatial_dims = None  # trains the task's own target: any network, under any --dims

    def __init__(self, source: str = "lcs", source_root: str = "") -> None:
        self.source = source
        self.source_root = source_root
        kind = TASKS.get(source).kind
        self.transfers = "encoder+decoder" if kind == "segmentation" else "encoder"

    def source_task(self) -> tuple[str, Path | None]:
        return self.source, Path(self.source_root) if self.source_root else None
