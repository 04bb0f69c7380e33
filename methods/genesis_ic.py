"""Models Genesis ablation ``genesis-ic``: inner cutout (in-painting) only (Zhou et al., MICCAI 2019,
figure 3; Medical Image Analysis 2021).

The Genesis pretext task (restore the flipped cube, MSE on the sigmoid output) with one
transform: inner cutout (in-painting), applied to every cube (probability 1 *(choice)*: the ablation
isolates the effect of one transform, so every example carries it; the papers do not
give the probability used). The other transforms are off; the flip augmentation stays
on as in Genesis. Built with ``GenesisConfig.only("inner_cutout", prob=1.0)``; everything
else (sizes, optimiser: SGD 1.0 / momentum 0.9 with a plateau schedule) is Genesis's.
Transfers the encoder and the decoder.
"""

from __future__ import annotations

from benchmark.methods.genesis import Genesis, GenesisConfig

from benchmark.api.registry import METHODS


@METHODS.register
class GenesisInnerCutout(Genesis):
    name = "genesis-ic"
    description = "Genesis ablation: restore cubes from inner cutout only (Zhou et al. 2019, fig. 3)"

    def __init__(self, config: GenesisConfig | None = None) -> None:
        super().__init__(config if config is not None else GenesisConfig.only("inner_cutout", prob=1.0))
