"""One configuration object per training run: written to RUN_DIR/config.json, and the source of the command line's
flags (each field is one flag, with the help text in its metadata), so that nothing is written twice."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from keras_vqvae.data.synthetic import SubjectSplit
from keras_vqvae.errors import InputError

CONFIG_FILE = "config.json"


def _option(default, help: str, **metadata):
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _subject_counts(text: str) -> tuple[int, int, int]:
    return dataclasses.astuple(SubjectSplit.parse(text))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run: the VQ-VAE, then the priors over its codes. The defaults train on the
    embedded synthetic data in about 28 minutes on 2 CPU cores, 13 for the VQ-VAE (test SSIM 0.972, brain SSIM 0.927)
    and 15 for the PixelCNN prior (test NLL 2.24 bits/code): see the README's results."""

    data: str | None = _option(None, "folder of slices: the one holding keras_png_slices_train|validate|test, one "
                                     "split folder, or any folder of PNG/JPEG slices (default: embedded synthetic "
                                     "data)")
    run_dir: str = _option("runs/vqvae", "run folder for configuration, checkpoints, metrics, logs and plots; running "
                                         "the same command again resumes the run in it")
    image_size: int = _option(128, "side of the square images the model sees, in pixels (slices are resized to it)")
    epochs: int = _option(40, "number of training epochs (raise it to continue a finished run)", resumable=True)
    batch_size: int = _option(8, "images per training step")
    learning_rate: float = _option(2e-3, "peak Adam learning rate, decayed along a cosine to 2% of it")
    num_embeddings: int = _option(256, "codebook size K: number of discrete codes")
    embedding_dim: int = _option(32, "codebook dimension D: length of each code vector")
    downsampling: int = _option(4, "encoder downsampling factor, a power of two (4: 64x64 codes for 256x256 slices)")
    channels: int = _option(32, "channels of the encoder's and decoder's residual stages")
    residual_blocks: int = _option(2, "residual blocks in each of the encoder and decoder")
    codebook_update: str = _option("ema", "how the codebook learns: exponential moving averages or the codebook loss",
                                   choices=("ema", "loss"))
    beta: float = _option(0.25, "commitment weight beta of the VQ loss (paper eq. 3)")
    dead_code_steps: int = _option(50, "restart a code unused for this many training steps (0: never)")
    seed: int = _option(0, "seed for data splitting, shuffling, synthetic subjects and weights")
    synthetic_subjects: tuple[int, int, int] = _option(
        (48, 8, 8), "with the embedded data: virtual subjects in train,validate,test", parse=_subject_counts)
    pixelcnn_epochs: int = _option(12, "training epochs of the PixelCNN prior", resumable=True)
    pixelcnn_batch_size: int = _option(16, "code maps per training step of the PixelCNN", prior="pixelcnn")
    pixelcnn_learning_rate: float = _option(1e-3, "peak Adam learning rate of the PixelCNN, decayed along a cosine "
                                                  "to 2% of it", prior="pixelcnn")
    pixelcnn_filters: int = _option(32, "channels of the PixelCNN's gated stacks", prior="pixelcnn")
    pixelcnn_layers: int = _option(12, "gated layers of the PixelCNN", prior="pixelcnn")
    pixelcnn_kernel_size: int = _option(5, "kernel width of the PixelCNN's stacks (odd)", prior="pixelcnn")
    condition: str = _option("none", "what the PixelCNN is conditioned on: nothing, or the slice position read from "
                                     "file names (then samples can be asked for a slice position)",
                             choices=("none", "slice"), prior="pixelcnn")
    dcgan_epochs: int = _option(30, "training epochs of the DCGAN prior", resumable=True)
    dcgan_batch_size: int = _option(32, "code maps per training step of the DCGAN (at least 2, for batch "
                                                   "normalisation)", prior="dcgan")
    dcgan_learning_rate: float = _option(2e-4, "Adam learning rate of both DCGAN networks (beta_1 0.5)",
                                         prior="dcgan")
    dcgan_noise_dim: int = _option(128, "length of the DCGAN generator's noise vector", prior="dcgan")
    dcgan_filters: int = _option(64, "channels of the generator's last and the discriminator's first convolution",
                                 prior="dcgan")
    dcgan_snapping: str = _option("nearest", "how generated latent maps become codes: nearest codebook vector of a "
                                             "D-channel map, or even bins of a one-channel map (earlier projects)",
                                  choices=("nearest", "binned"), prior="dcgan")
    strategy: str = _option("auto", "tf.distribute strategy: auto (mirrored over several GPUs, else one device), "
                                    "one-device, mirrored, multi-worker (machines listed in TF_CONFIG) or tpu",
                            choices=("auto", "one-device", "mirrored", "multi-worker", "tpu"), resumable=True)
    mixed_precision: str = _option("off", "compute in float16 or bfloat16 with float32 weights (the quantizer stays "
                                          "float32), or off", choices=("off", "float16", "bfloat16"), resumable=True)
    jit_compile: bool = _option(False, "compile the training steps with XLA", resumable=True)
    cache: str = _option("memory", "where decoded, resized slices are kept after the first epoch: memory, none, or a "
                                   "path prefix for files on disk (for data larger than memory)", resumable=True)
    num_generated: int = _option(64, "slices generated for the samples grid and the generation metrics",
                                 resumable=True)
    temperature: float = _option(1.0, "sampling temperature of those slices", resumable=True)

    def __post_init__(self):
        checks = {
            "image_size": self.image_size >= 16, "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0, "num_embeddings": self.num_embeddings >= 2,
            "embedding_dim": self.embedding_dim >= 1, "channels": self.channels >= 8,
            "residual_blocks": self.residual_blocks >= 0, "beta": self.beta >= 0,
            "dead_code_steps": self.dead_code_steps >= 0, "synthetic_subjects": min(self.synthetic_subjects) >= 1,
            "pixelcnn_epochs": self.pixelcnn_epochs >= 1, "pixelcnn_batch_size": self.pixelcnn_batch_size >= 1,
            "pixelcnn_learning_rate": self.pixelcnn_learning_rate > 0, "pixelcnn_filters": self.pixelcnn_filters >= 1,
            "pixelcnn_layers": self.pixelcnn_layers >= 1,
            "pixelcnn_kernel_size": self.pixelcnn_kernel_size >= 3 and self.pixelcnn_kernel_size % 2 == 1,
            "dcgan_epochs": self.dcgan_epochs >= 1, "dcgan_batch_size": self.dcgan_batch_size >= 2,
            "dcgan_learning_rate": self.dcgan_learning_rate > 0, "dcgan_noise_dim": self.dcgan_noise_dim >= 1,
            "dcgan_filters": self.dcgan_filters >= 1,
            "num_generated": self.num_generated >= 2, "temperature": self.temperature > 0,
            "downsampling": self.downsampling >= 2 and 2 ** round(math.log2(self.downsampling)) == self.downsampling,
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"--{_flag(name)} {_show(getattr(self, name))} is out of range: {self.help(name)}")
        if self.image_size % self.downsampling:
            raise InputError(f"--image-size {self.image_size} is not divisible by --downsampling {self.downsampling}: "
                             f"pick sizes such as 128 or 256 with downsampling 4 or 8")

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)

    def save(self) -> None:
        self.run_path.mkdir(parents=True, exist_ok=True)
        (self.run_path / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> TrainConfig:
        path = Path(run_dir) / CONFIG_FILE
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read {path} ({error}): is {run_dir} a run folder made by keras_vqvae.train?")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)

    def prior_settings(self, prior: str) -> dict:
        """The settings that make `prior` ('pixelcnn' or 'dcgan') what it is: changing one retrains that prior."""
        fields = [f.name for f in dataclasses.fields(self) if f.metadata.get("prior") == prior]
        return {name: _show(getattr(self, name)) for name in fields}

    def check_resumable_from(self, saved: TrainConfig) -> None:
        """Raises InputError when this run's settings differ from the saved run's in more than the resumable fields
        and the priors' settings (a prior whose settings change is trained again, the VQ-VAE is kept)."""
        fixed = [f.name for f in dataclasses.fields(self)
                 if not (f.metadata.get("resumable") or f.metadata.get("prior")) and f.name != "run_dir"]
        changed = [name for name in fixed if getattr(self, name) != getattr(saved, name)]
        if changed:
            shown = ", ".join(f"--{_flag(n)} {_show(getattr(saved, n))} (now {_show(getattr(self, n))})"
                              for n in changed)
            raise InputError(f"{self.run_dir} holds a run made with {shown}: repeat those flags to resume it, "
                             f"or give a new --run-dir")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
