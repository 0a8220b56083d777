"""One configuration object per training run: written to RUN_DIR/config.json, and the source of the command line's
flags (each field is one flag, with its help text and its check), so that nothing is written twice.

`TrainConfig` holds the run's, the data's and the VQ-VAE's settings, then the settings of every registered prior,
each under its prior's name (`pixelcnn_epochs` is the `epochs` of `PixelCNNSettings`, flag --pixelcnn-epochs).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from keras_vqvae.data.synthetic import SubjectSplit
from keras_vqvae.errors import InputError
from keras_vqvae.priors import PRIOR_KINDS, PriorKind
from keras_vqvae.priors.sampler import MAX_SEED
from keras_vqvae.settings import (Check, at_least, between, check_settings, flag, option, positive,
                                  power_of_two_at_least, shown)
from keras_vqvae.training.distribute import PRECISIONS, STRATEGIES

CODEBOOK_UPDATES = ("ema", "loss")


def _subject_counts(text: str) -> tuple[int, int, int]:
    return dataclasses.astuple(SubjectSplit.parse(text))


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The run's, the data's and the VQ-VAE's settings; `TrainConfig` adds the priors' settings to them."""

    data: str | None = option(None, "folder of slices: the one holding keras_png_slices_train|validate|test, one "
                                    "split folder, or any folder of PNG/JPEG slices (default: embedded synthetic "
                                    "data)")
    run_dir: str = option("runs/vqvae", "run folder for configuration, checkpoints, metrics, logs and plots; running "
                                        "the same command again resumes the run in it")
    image_size: int = option(128, "side of the square images the model sees, in pixels (slices are resized to it)",
                             at_least(16))
    epochs: int = option(40, "number of training epochs (raise it to continue a finished run)", at_least(1),
                         resumable=True)
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
    prior: str = option("pixelcnn", "which prior learns the codes: " + "; ".join(
        f"{kind.name}, {kind.description}" for kind in PRIOR_KINDS.values()) + ". A run folder can hold one of "
        "each, trained on the same VQ-VAE", choices=tuple(PRIOR_KINDS), resumable=True)
    condition: str = option("auto", "what the prior is conditioned on: the slice position read from file names "
                                    "(then samples can be asked for a slice position), nothing, or auto: the slice "
                                    "position whenever every file name carries one (and the strategy is not "
                                    "multi-worker); for the priors that take a "
                                    "condition: " + ", ".join(
                                        kind.name for kind in PRIOR_KINDS.values() if kind.conditional),
                            choices=("auto", "slice", "none"), retrains_prior=True)
    strategy: str = option("auto", "tf.distribute strategy: auto (mirrored over several GPUs, else one device), "
                                   "one-device, mirrored, multi-worker (machines listed in TF_CONFIG) or tpu",
                           choices=STRATEGIES, resumable=True)
    mixed_precision: str = option("off", "compute in float16 or bfloat16 with float32 weights (the quantizer stays "
                                         "float32), or off", choices=tuple(PRECISIONS), resumable=True)
    jit_compile: bool = option(False, "compile the training steps with XLA", resumable=True)
    cache: str = option("memory", "where decoded, resized slices are kept after the first epoch: memory, none, or a "
                                  "path prefix for files on disk (for data larger than memory)", resumable=True)
    num_generated: int = option(256, "slices generated for the generation metrics (at least 256 for a fair Fréchet "
                                     "distance) and the samples grid",
                                at_least(2), resumable=True)
    temperature: float = option(1.0, "sampling temperature of those slices", positive, resumable=True)

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

    def prior_settings(self, kind: PriorKind):
        """The settings of prior `kind` in this configuration: an instance of its settings dataclass."""
        return kind.settings(**{field.name: getattr(self, f"{kind.name}_{field.name}")
                                for field in dataclasses.fields(kind.settings)})

    def prior_tag(self, kind: PriorKind) -> dict[str, str]:
        """The settings that make a trained prior of `kind` what it is: changing one retrains that prior."""
        names = [f.name for f in dataclasses.fields(self)
                 if (f.metadata.get("prior") == kind.name and not f.metadata.get("resumable"))
                 or (f.metadata.get("retrains_prior") and kind.conditional)]
        return {name: shown(getattr(self, name)) for name in names}

    def check_resumable_from(self, saved: RunSettings) -> None:
        """Raises InputError when this run's settings differ from the saved run's in more than the resumable fields
        and the priors' settings (a prior whose settings change is trained again, the VQ-VAE is kept)."""
        fixed = [f.name for f in dataclasses.fields(self) if not (
            f.metadata.get("resumable") or f.metadata.get("prior") or f.metadata.get("retrains_prior")
            or f.name == "run_dir")]
        changed = [name for name in fixed if getattr(self, name) != getattr(saved, name)]
        if changed:
            listed = ", ".join(f"{flag(n)} {shown(getattr(saved, n))} (now {shown(getattr(self, n))})"
                               for n in changed)
            raise InputError(f"{self.run_dir} holds a run made with {listed}: repeat those flags to resume it, "
                             f"or give a new --run-dir")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str):
        """The configuration that `to_json` wrote (fields it lacks keep their defaults; unknown ones are ignored;
        `adversarial_start`, as runs made before it was renamed call it, is `adversarial_start_epoch`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        saved = json.loads(text)
        if "adversarial_start" in saved:
            saved["adversarial_start_epoch"] = saved.pop("adversarial_start")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
        return cls(**values)


def _prior_fields(kind: PriorKind) -> list[tuple[str, type, dataclasses.Field]]:
    """Each field of the prior's settings as a field of TrainConfig named `PRIOR_FIELD`."""
    return [(f"{kind.name}_{field.name}", field.type,
             dataclasses.field(default=field.default, metadata={**field.metadata, "prior": kind.name}))
            for field in dataclasses.fields(kind.settings)]


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", [field for kind in PRIOR_KINDS.values() for field in _prior_fields(kind)], bases=(RunSettings,),
    frozen=True, namespace={"__module__": __name__, "__doc__": (
        "Everything that defines a training run: the VQ-VAE, then the priors over its codes. What the defaults reach "
        "on the embedded synthetic data, and how long they take, is in the README's results and run time.")})
