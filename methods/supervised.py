"""Supervised pretraining on a labelled source task: the in-suite counterpart of the fully
supervised pretrained models of Table 3 (MedicalNet, NiftyNet), trained with no download.

The backbone is trained on the source task's *training* split (its validation split for early
stopping; its test split never), with the fine-tuning schedule of the profile for that task's
kind, and then transferred to the target task like any pretrained checkpoint: the whole
encoder-decoder from a segmentation source, the encoder from a classification source. The harness
refuses a source whose training patients include any of the target's test patients (matched by
patient id, ``Case.group``) or whose training scans include any of the target's test scans
(matched by series UID, ``Task.split_scans``: LIDC-IDRI names patients, LUNA16 series, and
LUNA16's scans are LIDC-IDRI series; NCS's crops layout names no series, so such a pair is kept
apart by the user). The target
task itself is a source only on other patients (another site's folder, or another phantom): not
on the target's own data, and not sharing any patient with it, or the label fraction would be a
fiction.

Settings: ``source`` (a task name, e.g. ``lcs``), ``source_root`` (its dataset folder; empty: its
built-in phantom), ``source_phantom_seed`` (which built-in phantom: another seed draws other
synthetic patients). ``benchmark run --method supervised --method-arg source=lcs --task ncs``;
``--method-arg source=ncc --method-arg source_phantom_seed=1 --task ncc`` pretrains on a second
site's nodules, the calibration's positive control.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.api.backbone import ANY_BACKBONE
from benchmark.api.method import Method, SourceTask
from benchmark.api.registry import METHODS, TASKS
from benchmark.data.datasets import PHANTOM_SEED


@METHODS.register
class Supervised(Method):
    name = "supervised"
    description = "Supervised pretraining on a labelled source task's training split (--method-arg source=TASK)"
    backbones = (ANY_BACKBONE,)
    spatial_dims = None  # trains the task's own target: any network, under any --dims

    def __init__(self, source: str = "lcs", source_root: str = "", source_phantom_seed: int = PHANTOM_SEED) -> None:
        if source_phantom_seed < 0:
            raise ValueError(f"source_phantom_seed must be >= 0, got {source_phantom_seed}")
        if source_root and source_phantom_seed != PHANTOM_SEED:
            raise ValueError("source_phantom_seed chooses a built-in phantom: it cannot go with source_root")
        self.source = source
        self.source_root = str(Path(source_root).resolve()) if source_root else ""  # one folder, one id
        self.source_phantom_seed = source_phantom_seed
        kind = TASKS.get(source).kind
        self.transfers = "encoder+decoder" if kind == "segmentation" else "encoder"

    def source_task(self) -> SourceTask:
        if self.source_root:
            return SourceTask(self.source, root=Path(self.source_root))
        return SourceTask(self.source, phantom_seed=self.source_phantom_seed)
