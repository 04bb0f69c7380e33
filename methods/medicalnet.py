"""MedicalNet (Chen, Ma, Zheng, "Med3D: Transfer Learning for 3D Medical Image Analysis", 2019;
github.com/Tencent/MedicalNet): its released supervised weights, benchmarked.

MedicalNet's 3D ResNets were trained with labels, to segment many public datasets at once (a
shared encoder, one segmentation head per dataset): 8 datasets in the paper (3DSeg-8), 23 in the
``_23dataset`` files. This method pretrains nothing: it transfers the encoder of a released file
given with ``--weights`` (backbone ``resnet3d``, which reads the depth, shortcut type and width off
the file), and the target's ``conv_seg`` head is trained afresh.

Leakage: the pretraining data include LiTS, the paper's own liver transfer task, which is the data
of the LCS task, and MSD's brain-tumour task, taken from BraTS (the BMS data); a MedicalNet result on
LCS or BMS has seen those scans (and their labels) before: such runs carry a warning in their record
and in the report. The 23 datasets are not listed in the release, so overlap with other tasks' data
cannot be ruled out.

Setting ``depth``: 0 takes the depth from the file; another value (10, 18, 34, 50, 101, 152, 200)
fixes the backbone's depth, which the file must then have.
"""

from __future__ import annotations

from typing import Any

from benchmark.api.method import Method
from benchmark.api.registry import METHODS

DEPTHS = (10, 18, 34, 50, 101, 152, 200)  # MedicalNet's released depths (backbone resnet3d)


@METHODS.register
class MedicalNet(Method):
    name = "medicalnet"
    description = ("MedicalNet: benchmarks the released supervised 3D ResNet weights (Med3D, Chen et al. 2019; "
                   "needs --weights)")
    transfers = "encoder"
    backbones = ("resnet3d",)
    pretrained_on = ("lcs", "bms")  # 3DSeg-8: LiTS (the LCS data) and MSD's brain tumours (from BraTS, the BMS data)
    weights_required = ("a MedicalNet file, e.g. resnet_50_23dataset.pth, from github.com/Tencent/MedicalNet "
                        "(README: Google Drive or Tencent Weiyun, MedicalNet_pytorch_files.zip)")

    def __init__(self, depth: int = 0) -> None:
        if depth not in (0, *DEPTHS):
            raise ValueError(f"depth must be 0 (from the file) or one of {', '.join(map(str, DEPTHS))}, got {depth}")
        self.depth = int(depth)

    def backbone_settings(self) -> dict[str, Any]:
        return {"depth": self.depth} if self.depth else {}
