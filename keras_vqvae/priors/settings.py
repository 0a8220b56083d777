"""The priors' settings: one dataclass per prior, each field one flag of `python -m keras_vqvae.train`, named after
the prior (the `epochs` of `PixelCNNSettings` is `TrainConfig.pixelcnn.epochs`, flag --pixelcnn-epochs).

The models never read these: each prior's `PriorKind.build` turns its settings into constructor arguments. Which of
them a resumed run may change is said in `keras_vqvae.training.config.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from keras_vqvae.errors import InputError
from keras_vqvae.priors.autoregressive import UNCONDITIONAL_RATE
from keras_vqvae.settings import at_least, check_settings, odd_at_least, option, positive

SNAPPING = ("nearest", "binned")  # how the DCGAN turns generated latent maps into codes (`LatentDCGAN(snapping=...)`)


@dataclasses.dataclass(frozen=True)
class AutoregressiveSettings:
    """What the two autoregressive priors' settings share: their training, and the fraction of maps taught as 'any
    position' (`AutoregressivePrior(unconditional_rate=...)`). Each prior's own fields follow these."""

    PREFIX: ClassVar[str]  # of the prior's flags: 'pixelcnn' for --pixelcnn-epochs

    epochs: int = option(12, "training epochs of the prior", at_least(1))
    batch_size: int = option(16, "code maps per training step of the prior", at_least(1))
    learning_rate: float = option(1e-3, "peak Adam learning rate of the prior, decayed along a cosine to 2% of it",
                                  positive)
    unconditional_rate: float = option(UNCONDITIONAL_RATE, "with a condition (--condition), the fraction of training "
                                                           "maps taught as 'any position' (a null class), so that the "
                                                           "prior also samples slices of any position (condition -1)",
                                       lambda rate: 0 <= rate < 1)

    def __post_init__(self):
        check_settings(self, self.PREFIX)


@dataclasses.dataclass(frozen=True)
class PixelCNNSettings(AutoregressiveSettings):
    """The gated PixelCNN prior's settings (flags --pixelcnn-epochs, ...)."""

    PREFIX = "pixelcnn"
    filters: int = option(64, "channels of the PixelCNN's gated stacks", at_least(1))
    layers: int = option(12, "gated layers of the PixelCNN", at_least(1))
    kernel_size: int = option(5, "kernel width of the PixelCNN's stacks (odd)", odd_at_least(3))


@dataclasses.dataclass(frozen=True)
class TransformerSettings(AutoregressiveSettings):
    """The transformer prior's settings (flags --transformer-epochs, ...)."""

    PREFIX = "transformer"
    dim: int = option(128, "width of the transformer's vectors (a multiple of its heads)", at_least(1))
    layers: int = option(4, "transformer layers", at_least(1))
    heads: int = option(4, "attention heads of each transformer layer", at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if self.dim % self.heads:
            raise InputError(f"--transformer-dim {self.dim} is not a multiple of --transformer-heads {self.heads}: "
                             f"each head takes an equal share of the width, so pick e.g. --transformer-dim "
                             f"{self.heads * max(1, round(self.dim / self.heads))}")


@dataclasses.dataclass(frozen=True)
class DCGANSettings:
    """The DCGAN prior's settings (flags --dcgan-epochs, ...)."""

    epochs: int = option(30, "training epochs of the DCGAN prior", at_least(1))
    batch_size: int = option(32, "code maps per training step of the DCGAN (at least 2, for batch normalisation)",
                             at_least(2))
    learning_rate: float = option(2e-4, "Adam learning rate of both DCGAN networks (beta_1 0.5)", positive)
    noise_dim: int = option(128, "length of the DCGAN generator's noise vector", at_least(1))
    filters: int = option(64, "channels of the generator's last and the discriminator's first convolution",
                          at_least(1))
    snapping: str = option("nearest", "how generated latent maps become codes: nearest codebook vector of a "
                                      "D-channel map, or even bins of a one-channel map (earlier projects)",
                           choices=SNAPPING)

    def __post_init__(self):
        check_settings(self, "dcgan")
