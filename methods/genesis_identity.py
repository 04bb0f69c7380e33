"""Models Genesis ablation ``genesis-identity``: no transform (Zhou et al., MICCAI 2019,
figure 3, "identical mapping"; Medical Image Analysis 2021).

The Genesis pretext task with every transform off: the input is the (flipped) cube
itself and the U-Net learns to reproduce it (MSE on the sigmoid output). The flip
augmentation stays on as in Genesis. Built with ``GenesisConfig.only("identity")``;
everything else (optimiser: SGD 1.0 / momentum 0.9 with a plateau schedule) is
Genesis's. Transfers the encoder and the decoder.
"""

from __future__ import annotations

from benchmark.methods.genesis import Genesis, GenesisConfig

from benchmark.api.registry import METHODS


@METHODS.register
class GenesisIdentity(Genesis):
    name = "genesis-identity"
    description = "Genesis ablation: reproduce the untransformed cube (identity, Zhou et al. 2019, fig. 3)"

    def __init__(self, config: GenesisConfig | None = None) -> None:
        super().__init__(config if config is not None else GenesisConfig.only("identity"))
