"""Models Genesis Chest X-ray (Zhou et al., "Models Genesis", Medical Image Analysis 2021): Genesis 2D
pretrained on radiographs instead of CT slices.

The same 2D restoration task, transforms, settings and 2D networks as ``genesis-2d``, with its pool read
from radiographs in the ChestX-ray14 layout (``benchmark.data.pools``: ``--pretrain-root`` a folder with
``images/*.png``, ``Data_Entry_2017.csv``, ``train_val_list.txt`` and ``test_list.txt``; patches of the
profile cube's (Y, X) size, pixels scaled to [0, 1] without clipping, the test list never used). The
built-in pool is a radiograph phantom: digitally reconstructed radiographs of chest CT phantom
patients that are none of any task's.
"""

from __future__ import annotations

from benchmark.methods.genesis_2d import Genesis2D

from benchmark.api.registry import METHODS


@METHODS.register
class GenesisXray(Genesis2D):
    name = "genesis-xray"
    description = "Models Genesis Chest X-ray: Genesis 2D pretrained on radiographs (ChestX-ray14 layout)"
    pool_layout = "chestxray14"
