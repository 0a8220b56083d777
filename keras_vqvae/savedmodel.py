"""A trained run as a TensorFlow SavedModel that runs without this package (Keras 3's `keras.export.ExportArchive`:
graphs and variables, no Python code); `python -m keras_vqvae.export` is its command.

Endpoints of the SavedModel, for a model of S x S images and h x w code maps with K codes:

    encode(images)          images (batch, S, S, 1), uint8 in 0..255 or float32 in [0, 1] -> indices (batch, h, w)
                            int32
    decode(indices)         indices (batch, h, w) int32 in [0, K) -> images (batch, S, S, 1) float32 in [0, 1]
    reconstruct(images)     images as encode takes them -> images (batch, S, S, 1) float32 in [0, 1];
                            also `serving_default`
    sample(num_samples, seed[, temperature[, condition]])
                            int32, int32, float32, int32 scalars -> {"images": (num_samples, S, S, 1) float32 in
                            [0, 1], "indices": (num_samples, h, w) int32}; the run's prior through its default
                            sampler (the PixelCNN's and the transformer's cached samplers, the DCGAN's noise
                            sampler); the same seed gives the slices `keras_vqvae.generate` and `predict` give for
                            it. `condition`, for a prior conditioned on slice positions: the position of every
                            slice, or -1 for any position (a prior trained with a null class); without it the
                            slices spread evenly over the positions
    anomaly(images[, seed[, positions]])
                            images as encode takes them, an int32 scalar (default 0), int32 (batch,) slice positions
                            for a prior conditioned on them (-1 or left out: any position) -> {"maps": (batch, S, S)
                            float32 anomaly maps, "scores": (batch,), "nll": (batch, h, w) bits per code, "healed":
                            (batch, D, S, S, 1) in [0, 1], "residual_maps": (batch, S, S) the plain reconstruction
                            residual, "masks": (batch, S, S) bool, the maps median-filtered and above the run's
                            calibrated mask threshold, small components removed}; with the run's calibrated
                            thresholds and the default mask settings, the maps and masks `keras_vqvae.anomaly_maps`,
                            `anomaly_masks` and `python -m keras_vqvae.detect` give for the same seed
                            (only with a prior that scores codes: the PixelCNN or the transformer)

Load it with `model = tf.saved_model.load(DIR)` and call, e.g., `model.sample(16, 0)["images"]`, keeping `model`
while its endpoints are used (TensorFlow frees the variables with the loaded object). Bad inputs stop with an error
that names what was expected: a wrong rank or size fails the check named `expected_images_of_shape_batch_S_S_1` (or
`expected_indices_of_shape_batch_h_w`), values out of range an assertion whose message gives the range, and another
dtype lists the signatures the endpoint has.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from keras_vqvae.anomaly import AnomalyDetector, AnomalySettings, detection_problem
from keras_vqvae.anomaly_masks import MaskSettings, mask_tensor, run_mask_calibration
from keras_vqvae.calibration import run_calibration
from keras_vqvae.errors import InputError, folder_to_write
from keras_vqvae.models.vqvae import VQVAE
from keras_vqvae.priors import PRIOR_KINDS, Sampler, kind_of, make_sampler
from keras_vqvae.priors.autoregressive import ANY_POSITION
from keras_vqvae.priors.sampler import MAX_SEED, sample_labels, sample_seeds
from keras_vqvae.settings import flag, flat_values, shown
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.run_folder import RunFolder

ANOMALY_OUTPUTS = ("maps", "scores", "nll", "healed", "residual_maps")  # and "masks"

ONE_LINER_WARNING = ("Keep the loaded object in a variable, as below: TensorFlow frees the model's variables with it, "
                     "so `tf.saved_model.load(\"saved_model\").sample(8, 0)` in one expression fails with \"Called a "
                     "function referencing variables which have been deleted\".")


def _scalar(dtype) -> tf.TensorSpec:
    return tf.TensorSpec((), dtype)


def _checked(value, *checks):
    """`value` once each check (a function of it that returns an assert op) has passed, one after the other, so that
    the first failure is the one reported."""
    for check in checks:
        with tf.control_dependencies([check(value)]):
            value = tf.identity(value)
    return value


class _Endpoints:
    """The graphs behind the endpoints, for one VQ-VAE of `image_size` images and an optional prior."""

    def __init__(self, vqvae: VQVAE, image_size: int, prior: keras.Model | None,
                 detector: AnomalyDetector | None, masks: MaskSettings | None):
        self.vqvae, self.image_size, self.detector, self.masks = vqvae, image_size, detector, masks
        self.grid_shape = (image_size // vqvae.encoder.downsampling,) * 2
        self.num_embeddings = vqvae.quantizer.num_embeddings
        self.sampler = None if prior is None else make_sampler(None, prior)

    def model_images(self, images):
        """(batch, S, S, 1) uint8 0..255 or float32 0..1, checked -> float32 in the model's [-0.5, 0.5]."""
        size = self.image_size
        images = tf.ensure_shape(images, (None, size, size, 1), name=f"expected_images_of_shape_batch_{size}_{size}_1")
        if images.dtype != tf.uint8:
            in_range = "float images must lie in [0, 1] (or give uint8 0..255)"
            images = _checked(images, lambda x: tf.debugging.assert_greater_equal(x, 0.0, message=in_range),
                              lambda x: tf.debugging.assert_less_equal(x, 1.0, message=in_range))
        scale = 255.0 if images.dtype == tf.uint8 else 1.0
        return tf.cast(images, tf.float32) / scale - 0.5

    def encode(self, images):
        return self.vqvae.encode(self.model_images(images))

    def decode(self, indices):
        (h, w), k = self.grid_shape, self.num_embeddings
        indices = tf.ensure_shape(indices, (None, h, w), name=f"expected_indices_of_shape_batch_{h}_{w}")
        in_range = f"indices must lie in [0, {k}): this model has {k} codes"
        indices = _checked(indices, lambda x: tf.debugging.assert_non_negative(x, message=in_range),
                           lambda x: tf.debugging.assert_less(x, k, message=in_range))
        return self.vqvae.decode(indices) + 0.5

    def reconstruct(self, images):
        return self.vqvae.reconstruct(self.model_images(images)) + 0.5

    @staticmethod
    def checked_seed(seed):
        return _checked(seed, lambda s: tf.debugging.assert_non_negative(s, f"seed must lie in [0, {MAX_SEED}]"))

    def checked_positions(self, positions, name: str):
        """Slice positions (a scalar or (batch,)) once they lie in the prior's range ([-1, classes) with a class
        for any position), the assertion's message naming the argument `name`."""
        classes = self.sampler.num_classes
        lowest = ANY_POSITION if self.sampler.has_null_class else 0
        in_range = (f"{name} must lie in [{lowest}, {classes}): the slice positions this prior knows"
                    + (f", or {ANY_POSITION} for any position" if lowest < 0 else ""))
        return _checked(positions, lambda p: tf.debugging.assert_greater_equal(p, lowest, message=in_range),
                        lambda p: tf.debugging.assert_less(p, classes, message=in_range))

    def sample(self, num_samples, seed, temperature=1.0, condition=None):
        num_samples = _checked(tf.convert_to_tensor(num_samples, tf.int32),
                               lambda n: tf.debugging.assert_positive(n, "num_samples must be >= 1"))
        # A Python int comes in as a constant, which shape inference folds into the ops below before the check runs:
        # a negative one would fail there, saying nothing of num_samples. It never sees one below 0.
        num_samples = tf.maximum(num_samples, 0)
        seed = self.checked_seed(seed)
        temperature = _checked(tf.cast(temperature, tf.float32),
                               lambda t: tf.debugging.assert_positive(t, "temperature must be positive"))
        classes = self.sampler.num_classes
        labels = None
        if classes:
            if condition is not None:
                condition = self.checked_positions(condition, "condition")
            labels = sample_labels(num_samples, classes, condition)
        indices = self.sampler.draw(sample_seeds(seed, 0, num_samples), temperature, labels)
        return {"images": self.vqvae.decode(indices) + 0.5, "indices": indices}

    def anomaly(self, images, seed=None, positions=None):
        seed = self.checked_seed(AnomalySettings().seed if seed is None else seed)
        images = self.model_images(images) + 0.5  # (batch, S, S, 1) in [0, 1]
        if self.sampler.num_classes and positions is not None:
            positions = tf.ensure_shape(positions, (None,), name="expected_positions_of_shape_batch")
            positions = _checked(self.checked_positions(positions, "positions"),
                                 lambda p: tf.debugging.assert_equal(tf.size(p), tf.shape(images)[0],
                                                                     message="give one position per image"))
        result = self.detector.detect(images, seed, 0, positions)
        masks = mask_tensor(result["maps"], self.masks.mask_threshold, self.masks.median_size, self.masks.min_pixels)
        return {**{name: result[name] for name in ANOMALY_OUTPUTS}, "masks": masks}


def _traced(function, signatures) -> tf.types.experimental.PolymorphicFunction:
    """`function` as a tf.function traced once for each signature (a list of specs): the SavedModel keeps them all,
    and a call picks the one its arguments match."""
    traced = tf.function(function)
    for signature in signatures:
        traced.get_concrete_function(*signature)
    return traced


def build_archive(vqvae: VQVAE, image_size: int, prior: keras.Model | None = None,
                  detector: AnomalyDetector | None = None, masks: MaskSettings | None = None):
    """A `keras.export.ExportArchive` with the endpoints this module describes (`sample` only with a prior,
    `anomaly` only with a detector of that prior and the masks' settings, their `mask_threshold` given)."""
    if (detector is None) != (masks is None) or (masks is not None and masks.mask_threshold is None):
        raise ValueError("the anomaly endpoint takes a detector and mask settings with a threshold, or neither")
    if detector is not None and detector.prior is not prior:
        raise ValueError("the anomaly endpoint's detector must use the archive's prior")
    endpoints = _Endpoints(vqvae, image_size, prior, detector, masks)
    archive = keras.export.ExportArchive()
    # The first signature traced is the one TF Serving sees (float images; every sample argument); Python calls get
    # all of them. Rank and size are checked in the graph.
    images = [[tf.TensorSpec(None, dtype)] for dtype in (tf.float32, tf.uint8)]
    reconstruct = _traced(endpoints.reconstruct, images)
    archive.add_endpoint("serving_default", reconstruct)
    archive.add_endpoint("reconstruct", reconstruct)
    archive.add_endpoint("encode", _traced(endpoints.encode, images))
    archive.add_endpoint("decode", _traced(endpoints.decode, [[tf.TensorSpec(None, tf.int32)]]))
    if prior is not None:
        arguments = [_scalar(tf.int32), _scalar(tf.int32), _scalar(tf.float32), _scalar(tf.int32)]
        optional = 2 if endpoints.sampler.num_classes else 1  # temperature, and condition for a conditional prior
        signatures = [arguments[:2 + n] for n in reversed(range(optional + 1))]  # the longest first
        archive.add_endpoint("sample", _traced(endpoints.sample, signatures))
    if detector is not None:
        sampler = endpoints.sampler
        extra = [_scalar(tf.int32), tf.TensorSpec((None,), tf.int32)][:2 if sampler.num_classes else 1]
        fewest = 2 if sampler.num_classes and not sampler.has_null_class else 0  # positions needed: no 'any'
        archive.add_endpoint("anomaly", _traced(endpoints.anomaly, [
            [image_spec, *extra[:n]] for n in reversed(range(fewest, len(extra) + 1)) for [image_spec] in images]))
    return archive


def export_run(run_dir: str | Path, out: str | Path | None, prior: str | None) -> Path:
    """A run's models as a TensorFlow SavedModel that runs without this package, with a model card README.md.

    An existing SavedModel in `out` is replaced only once the new one is written; a file, or any other non-empty
    folder, is refused before anything is loaded.

    Args:
        run_dir: a run folder made by `keras_vqvae.training.train`.
        out: the SavedModel's folder; None: RUN_DIR/saved_model.
        prior: the run's prior behind the `sample` (and, for priors that make anomaly maps, `anomaly`) endpoint:
            'pixelcnn', 'transformer' or 'dcgan'; None for the VQ-VAE's endpoints alone.
            `RunFolder(run_dir).current_prior()` is the one the commands take.

    Returns:
        The folder written: endpoints `encode`, `decode`, `reconstruct`, and with a prior `sample` (and `anomaly`).
    """
    run = RunFolder(run_dir)
    out = folder_to_write(out if out is not None else run.export_path, "--out")
    if out.exists() and any(out.iterdir()) and not (out / "saved_model.pb").exists():
        raise InputError(f"{out} exists and holds something other than a SavedModel: give a new or empty --out")
    config, vqvae, model = run.load(prior)
    detector = masks = None
    if model is not None and detection_problem(kind_of(model)) is None:
        detector = AnomalyDetector(vqvae, model, run_calibration(run, prior, model, verbose=0)["threshold"])
        masks = MaskSettings(mask_threshold=run_mask_calibration(run, prior, detector)["mask_threshold"])
    archive = build_archive(vqvae, config.image_size, model, detector, masks)
    temporary = out.with_name(out.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    archive.write_out(str(temporary), verbose=False)
    (temporary / "README.md").write_text(model_card(run, config, prior, make_sampler(None, model) if model else None))
    if out.exists():
        shutil.rmtree(out)
    temporary.rename(out)
    return out


def train_flags(config: TrainConfig) -> str:
    """The train flags that rebuild `config`: those that differ from the defaults."""
    defaults = flat_values(TrainConfig())
    return " ".join(flag(name) if value is True else f"{flag(name)} {shown(value)}"  # a switch takes no value
                    for name, value in flat_values(config).items() if value != defaults[name])


def _figures(values: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def model_card(run: RunFolder, config: TrainConfig, prior: str | None, sampler: Sampler | None = None) -> str:
    """The exported model's card: what it is, its data, configuration and measured metrics, how it was made and how
    to load it (with the conditions its prior's `sampler` takes, when it is conditioned on slice positions)."""
    results = run.read_metrics()
    conditions = []
    if sampler is not None and sampler.num_classes:
        middle = sampler.num_classes // 2
        conditions.append(f"level = model.sample(16, 0, 1.0, {middle})[\"images\"]  # 16 slices of position {middle} "
                          f"(positions 0 to {sampler.num_classes - 1})")
        if sampler.has_null_class:
            conditions.append("any_level = model.sample(16, 0, 1.0, -1)[\"images\"]  # 16 slices of any position")
    any_position = sampler is not None and (not sampler.num_classes or sampler.has_null_class)
    if prior and detection_problem(PRIOR_KINDS[prior]) is None and any_position:
        conditions.append("maps = model.anomaly(images)[\"maps\"]  # anomaly maps (16, S, S) of any slices, here "
                          "the samples")
    # The card travels with the model: it names no folder of the machine that made it, only RUN_DIR and DATA.
    shown_config = dataclasses.replace(config, run_dir="RUN_DIR", data=None if config.data is None else "DATA")
    made_with = dataclasses.replace(shown_config, prior=prior) if prior else shown_config
    train_command = f"python -m keras_vqvae.train {train_flags(made_with)}".rstrip()
    export_command = f"python -m keras_vqvae.export RUN_DIR --out saved_model --prior {prior or 'none'}"
    folders = [(str(run.path.absolute()), "RUN_DIR"), (str(run.path), "RUN_DIR")]
    if config.data is not None:
        data = Path(config.data).expanduser()
        folders = [(str(data.absolute()), "DATA"), (str(data), "DATA"), *folders]

    def without_folders(text: str) -> str:
        for folder, name in folders:
            text = text.replace(folder, name)
        return text

    lines = [
        "# keras_vqvae model", "",
        f"A VQ-VAE of {config.image_size}x{config.image_size} brain MRI slices "
        + (f"with a {prior} prior over its codes" if prior else "(no prior: no sample endpoint)")
        + ", exported as a TensorFlow SavedModel that runs without keras_vqvae installed.", "",
        "## Load it", "", ONE_LINER_WARNING, "", "```python", "import tensorflow as tf",
        "model = tf.saved_model.load(\"saved_model\")  # keep `model` while you use its endpoints",
        "images = model.sample(16, 0)[\"images\"]  # (16, S, S, 1) float32 in [0, 1]" if prior else
        "codes = model.encode(images)  # images (batch, S, S, 1), uint8 or float32 in [0, 1]", *conditions, "```", "",
        "## Endpoints", "", "```", "\n\n".join(__doc__.split("\n\n")[1:3]), "```", "",
        "## Data", "", without_folders(results.get("data", "not recorded")), "",
        *[f"- {without_folders(note)}" for note in results.get("notes", [])], "",
        "## Configuration", "", "RUN_DIR is the run folder that made the model"
        + ("" if config.data is None else ", DATA the data folder it was trained on (`--data`)") + ".", "",
        "```json", json.dumps(dataclasses.asdict(shown_config), indent=1), "```", "",
        "## Measured metrics", "",
    ]
    if "vqvae" in results:
        lines.append(f"- VQ-VAE, test split: {_figures(results['vqvae']['test'])}")
    if prior and prior in results:
        lines.append(f"- {prior} prior, test split: {_figures(results[prior]['test'])}")
        lines.append(f"- generated slices: {_figures(results[prior]['generation'])}")
    lines += ["", "## How it was made", "", "```", train_command, export_command, "```", ""]
    return "\n".join(lines)
