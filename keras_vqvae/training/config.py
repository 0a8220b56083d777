"""One configuration object per training run: written to RUN_DIR/config.json, and the source of the command line's
flags (each field is one flag, with its help text and its check), so that nothing is written twice.

`TrainConfig` holds the run's, the data's and the VQ-VAE's settings, then the settings of every registered prior,
each under its prior's name: `config.pixelcnn.epochs` is the `epochs` of `PixelCNNSettings`
(`keras_vqvae.priors.settings`), flag --pixelcnn-epochs. Which settings a resumed run may change, and which retrain a
prior, is said once, in `TrainConfig.RESUMABLE`, `RETRAINS_PRIOR` and `PRIOR_RESUMABLE`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from keras_vqvae.data.synthetic import SubjectSplit
from keras_vqvae.errors import InputError
from keras_vqvae.priors import PRIOR_KINDS, PriorKind
from keras_vqvae.priors.sampler import MAX_SEED
from keras_vqvae.priors.settings import DCGANSettings, PixelCNNSettings, TransformerSettings
from keras_vqvae.settings import (Check, at_least, between, check_settings, flag, flat_fields, from_flat, nested, option,
                                  positive, power_of_two_at_least, shown)
from keras_vqvae.training.distribute import PRECISIONS, STRATEGIES

CODEBOOK_UPDATES = ("ema", "loss")


def _subject_counts(text: str) -> tuple[int, int, int]:
    return dataclasses.astuple(SubjectSplit.parse(text))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run: the run's, the data's and the VQ-VAE's settings, then those of each
    prior over its codes. What the defaults reach on the embedded synthetic data, and how long they take, is in the
    README's results and run time. Every setting is one flag of `python -m keras_vqvae.train`, with its help text.

    Attributes:
        pixelcnn: the gated PixelCNN's `PixelCNNSettings` (flags --pixelcnn-epochs, ...).
        transformer: the transformer's `TransformerSettings` (flags --transformer-epochs, ...).
        dcgan: the DCGAN's `DCGANSettings` (flags --dcgan-epochs, ...).
    """

    data: str | None = option(None, "folder of slices: the one holding keras_png_slices_train|validate|test, one "
                                    "split folder, or any folder of PNG/JPEG slices (default: embedded synthetic "
                                    "data)")
    run_dir: str = option("runs/vqvae", "run folder for configuration, checkpoints, metrics, logs and plots; running "
                                        "the same command again resumes the run in it")
    image_size: int = option(128, "side of the square images the model sees, in pixels (slices are resized to it)",
                             at_least(16))
    epochs: int = option(40, "number of training epochs (raise it to continue a finished run)", at_least(1))
    batch_size: int = option(8, "images per training step", at_least(1))
    learning_rate: float = option(2e-3, "peak Adam learning rate, decayed along a cosine to 2% of it", positive)
    num_embeddings: int = option(256, "codebook size K: number of discrete codes", at_least(2))
    embedding_dim: int = option(32, "codebook dimension D: length of each code vector", at_least(1))
    downsampling: int = option(4, "encoder downsampling factor, a power of two (4: 64x64 codes for 256x256 slices)",
                               power_of_two_at_least(2))
    channels: int = option(32, "channels of the encoder's and decoder's residual stages", at_least(8))
    residual_blocks: int = option(2, "residual blocks in each of the encoder and decoder", at_least(0))
    codebook_update: str = option("ema", "how the codebook learns: exponential moving averages or the codebook "
                                         "loss", choices=CODEBOOK_UPDATES)
    beta: float = option(0.25, "commitment weight beta of the VQ loss (paper eq. 3)", at_least(0))
    dead_code_steps: int = option(50, "restart a code unused for this many training steps (0: never)", at_least(0))
    adversarial_weight: float = option(0.0, "weight of the decoder's adversarial term in the VQ-VAE's loss: a patch "
                                            "discriminator learns to tell real slices from decoded ones, as in VQGAN "
                                            "(0: none)", at_least(0))
    adversarial_start_epoch: int = option(30, "the VQ-VAE epoch after which the adversarial term acts, once the "
                                              "reconstructions have nearly converged", at_least(0))
    discriminator_filters: int = option(32, "channels of the patch discriminator's first stage", at_least(1))
    discriminator_learning_rate: float = option(2e-4, "Adam learning rate of the patch discriminator", positive)
    seed: int = option(0, "seed for data splitting, shuffling, synthetic subjects and weights",
                       between(0, MAX_SEED))
    synthetic_subjects: tuple[int, int, int] = option(
        (48, 8, 8), "with the embedded data: virtual subjects in train,validate,test",
        Check(lambda counts: min(counts) >= 1, "at least 1 in every split"), parse=_subject_counts)
    judge_subjects: int = option(144, "with the embedded data: further virtual subjects, in no split, that the "
                                      "slice-position network judging generated slices learns beside the training "
                                      "split (0: the training split alone, as always with --data)", at_least(0))
    judge_epochs: int = option(15, "training epochs of the slice-position network that judges generated slices "
                                   "(once trained, a run keeps it)", at_least(1))
    prior: str = option("pixelcnn", "which prior learns the codes: " + "; ".join(
        f"{kind.name}, {kind.description}" for kind in PRIOR_KINDS.values()) + ". A run folder can hold one of "
        "each, trained on the same VQ-VAE", choices=tuple(PRIOR_KINDS))
    condition: str = option("auto", "what the prior is conditioned on: the slice position read from file names "
                                    "(then samples can be asked for a slice position), nothing, or auto: the slice "
                                    "position whenever every file name carries one (and the strategy is not "
                                    "multi-worker); for the priors that take a "
                                    "condition: " + ", ".join(
                                        kind.name for kind in PRIOR_KINDS.values() if kind.conditional),
                            choices=("auto", "slice", "none"))
    strategy: str = option("auto", "tf.distribute strategy: auto (mirrored over several GPUs, else one device), "
                                   "one-device, mirrored, multi-worker (machines listed in TF_CONFIG) or tpu",
                           choices=STRATEGIES)
    mixed_precision: str = option("off", "compute in float16 or bfloat16 with float32 weights (the quantizer stays "
                                         "float32), or off", choices=tuple(PRECISIONS))
    jit_compile: bool = option(False, "compile the training steps with XLA")
    cache: str = option("memory", "where decoded, resized slices are kept after the first epoch: memory, none, or a "
                                  "path prefix for files on disk (for data larger than memory)")
    num_generated: int = option(256, "slices generated for the generation metrics (at least 256 for a fair Fréchet "
                                     "distance) and the samples grid",
                                at_least(2))
    temperature: float = option(1.0, "sampling temperature of those slices", positive)
    pixelcnn: PixelCNNSettings = nested(PixelCNNSettings)  # flags --pixelcnn-epochs, ...
    transformer: TransformerSettings = nested(TransformerSettings)
    dcgan: DCGANSettings = nested(DCGANSettings)

    # Resuming a run (its --run-dir again) keeps what the run folder holds. Of the settings above, a resumed run may
    # change these: they say how far, where and how fast to train and what to generate, not what is trained
    # (run_dir: a run folder may have been moved).
    RESUMABLE = frozenset({"run_dir", "epochs", "prior", "strategy", "mixed_precision", "jit_compile", "cache",
                           "num_generated", "temperature", "judge_epochs"})
    # A change to these trains the priors that take a condition afresh, on the same VQ-VAE.
    RETRAINS_PRIOR = frozenset({"condition"})
    # Every other one is fixed: a change is refused, naming its flag (`check_resumable_from`).
    # Of a prior's own settings, these may change (the prior trains on to its new epochs); a change to any other trains
    # that prior afresh, and no other (see `prior_tag`).
    PRIOR_RESUMABLE = frozenset({"epochs"})

    def __post_init__(self):
        check_settings(self)
        if self.condition == "slice" and self.strategy == "multi-worker":
            raise InputError("--condition slice does not train under --strategy multi-worker yet (Keras turns the "
                             "(codes, positions) batches into tensors outside the workers' steps): use --condition "
                             "none, or another strategy")
        if self.condition == "slice" and not PRIOR_KINDS[self.prior].conditional:
            raise InputError(f"--condition slice: the {self.prior} prior takes no condition, so its slices could "
                             f"not be asked for a position: use --condition auto or none with it, or a prior that "
                             f"takes one ({', '.join(k.name for k in PRIOR_KINDS.values() if k.conditional)})")
        if self.adversarial_weight and self.adversarial_start_epoch >= self.epochs:
            raise InputError(f"--adversarial-start-epoch {self.adversarial_start_epoch} is not below --epochs "
                             f"{self.epochs}, so the adversarial term would never act: lower "
                             f"--adversarial-start-epoch, or give --adversarial-weight 0")
        if self.image_size % self.downsampling:
            raise InputError(f"--image-size {self.image_size} is not divisible by --downsampling {self.downsampling}: "
                             f"pick sizes such as 128 or 256 with downsampling 4 or 8")
        side = self.image_size // self.downsampling
        problem = PRIOR_KINDS[self.prior].grid_problem((side, side))
        if problem:
            raise InputError(f"--image-size {self.image_size} with --downsampling {self.downsampling} gives "
                             f"{side}x{side} code maps, and the {self.prior} prior {problem}: raise --image-size, "
                             f"lower --downsampling, or choose another --prior")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)

    def prior_tag(self, kind: PriorKind) -> dict[str, str]:
        """The settings that make a trained prior of `kind` what it is, by the names its checkpoints' state.json
        records them under (`condition`, `pixelcnn_filters`, ...): changing one retrains that prior."""
        settings = getattr(self, kind.name)
        tag = {name: shown(getattr(self, name)) for name in sorted(self.RETRAINS_PRIOR) if kind.conditional}
        tag.update({f"{kind.name}_{field.name}": shown(getattr(settings, field.name))
                    for field in dataclasses.fields(settings) if field.name not in self.PRIOR_RESUMABLE})
        return tag

    def check_resumable_from(self, saved: TrainConfig) -> None:
        """Raises InputError when this run's settings differ from the saved run's in a fixed one (neither in
        `RESUMABLE` nor in `RETRAINS_PRIOR`, nor a prior's own: a prior whose settings change is trained again, the
        VQ-VAE is kept)."""
        fixed = [name for name, (prior, _) in flat_fields(type(self)).items()
                 if not prior and name not in self.RESUMABLE | self.RETRAINS_PRIOR]
        changed = [name for name in fixed if getattr(self, name) != getattr(saved, name)]
        if changed:
            listed = ", ".join(f"{flag(n)} {shown(getattr(saved, n))} (now {shown(getattr(self, n))})"
                               for n in changed)
            raise InputError(f"{self.run_dir} holds a run made with {listed}: repeat those flags to resume it, "
                             f"or give a new --run-dir")

    def to_json(self) -> str:
        """The configuration as config.json holds it, each prior's settings under its name: `"pixelcnn": {"epochs":
        12, ...}`."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """The configuration that `to_json` wrote, or that earlier versions wrote with the priors' settings flat
        (`"pixelcnn_epochs": 12`) or with `adversarial_start` (now `adversarial_start_epoch`), whose run folders so
        resume. Settings it lacks keep their defaults; unknown ones are ignored."""
        values = {}
        for key, value in json.loads(text).items():
            if isinstance(value, dict):  # a prior's settings
                values.update({f"{key}_{name}": inner for name, inner in value.items()})
            else:
                values[key] = tuple(value) if isinstance(value, list) else value
        if "adversarial_start" in values:
            values["adversarial_start_epoch"] = values.pop("adversarial_start")
        return from_flat(cls, values)
