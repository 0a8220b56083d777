"""Metrics that see anatomy: how far generated slices are from real ones in the eyes of a network that knows brain
slices, whether they look like any particular slice level, and whether they copy training subjects.

Whole-image SSIM against real slices is dominated by the black background and the brain's outline: a silhouette
filled with texture scores near a real slice. These metrics look inside the brain instead:

* `SlicePositionNetwork` is a small CNN trained from scratch on the run's training slices to tell each slice's
  position in its volume (its level: ventricles, basal ganglia, centrum semiovale...). Pretrained weights cannot be
  downloaded here, and ImageNet features judge MRI poorly anyway.
* `frechet_distance` between two sets of its embeddings (every stage's mean features, each standardised by its
  spread over the test slices) is the Fréchet distance of Heusel et al. 2017 (their eq. 6, "FID", in a domain
  network's embedding instead of Inception's).
* `anatomy_metrics` reports it for generated slices against the test split (an `AnatomyJudge` for several sets
  against the same references), beside two baselines computed the same way with as many slices: unseen real slices
  (the validation split) and the VQ-VAE's reconstructions of them (the best any prior over this VQ-VAE can do).
  With them: the network's mean confidence in its predicted position, the entropy of the predicted positions, and
  memorisation judged inside the brain.

References:
    M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter, "GANs Trained by a Two Time-Scale Update Rule
    Converge to a Local Nash Equilibrium", NeurIPS 2017.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_vqvae.metrics.generation import pairwise_ssim, real_sample, spread

MEMORISATION_PERCENTILE = 99.0  # a generated slice nearer a training slice than 99% of real test slices are: copied


@keras.saving.register_keras_serializable(package="keras_vqvae")
class SlicePositionNetwork(keras.Model):
    """Tells a slice's position in its volume from the image: a small convolutional classifier.

    images (batch, S, S, 1) in [0, 1] -> [random shifts, in training] -> 4 stages of [3x3 convolution, stride 2,
    batch normalisation, ReLU] with filters F, 2F, 4F, 4F -> each stage's output averaged over the image and the
    four concatenated: the embedding (batch, 11 F) -> dropout -> dense -> logits (batch, num_positions). Trained
    with `compile` / `fit` on (images, positions) pairs.

    The embedding keeps every stage, not only the last: the early stages see texture and sharpness at full
    resolution, which the position alone does not need but a comparison of real and generated slices does (with the
    last stage alone, slices blurred to a quarter of their resolution sat as near the test slices as real ones).

    Args:
        num_positions: how many slice positions there are (32 for OASIS).
        filters: F. Default 32.
    """

    def __init__(self, num_positions: int, filters: int = 32, **kwargs):
        kwargs.setdefault("name", "slice_position_network")
        super().__init__(**kwargs)
        if num_positions < 2:
            raise ValueError(f"need at least 2 slice positions, got {num_positions}")
        self.num_positions, self.filters = num_positions, filters
        self.shift = keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant")
        self.stages = [[keras.layers.Conv2D(filters * multiple, 3, strides=2, padding="same", use_bias=False),
                        keras.layers.BatchNormalization(momentum=0.9), keras.layers.ReLU()]
                       for multiple in (1, 2, 4, 4)]  # moving statistics that settle within a short training
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dropout = keras.layers.Dropout(0.3)
        self.logits = keras.layers.Dense(num_positions, name="logits", dtype="float32")

    def embed(self, images, training=None):
        """Embeddings (batch, 11 F) of images (batch, S, S, 1) in [0, 1]: every stage's mean features."""
        x, pooled = self.shift(images, training=training), []
        for stage in self.stages:
            for layer in stage:
                x = layer(x, training=training)
            pooled.append(self.pool(x))
        return tf.concat(pooled, axis=-1)

    def call(self, images, training=None):
        """Logits (batch, num_positions) of each image's slice position."""
        return self.logits(self.dropout(self.embed(images, training), training=training))

    def get_config(self):
        return {**super().get_config(), "num_positions": self.num_positions, "filters": self.filters}


def train_position_network(images: np.ndarray, positions: np.ndarray, num_positions: int, epochs: int = 15,
                           batch_size: int = 32, seed: int = 0, verbose: int = 0) -> SlicePositionNetwork:
    """A `SlicePositionNetwork` trained from scratch on images (n, S, S, 1) in [0, 1] and their positions (n,).

    TensorFlow holds one copy of the images; each epoch shuffles their indices (in the order shuffling the images
    themselves would give) and gathers every batch."""
    keras.utils.set_random_seed(seed)
    network = SlicePositionNetwork(num_positions)
    network.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
                        2e-3, epochs * -(-len(images) // batch_size))),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pixels = tf.convert_to_tensor(images.astype(np.float32, copy=False))  # one copy, held by TensorFlow
    labels = tf.convert_to_tensor(positions.astype(np.int32))
    order = tf.data.Dataset.range(len(images)).shuffle(len(images), seed=seed)
    batches = order.batch(batch_size).map(lambda index: (tf.gather(pixels, index), tf.gather(labels, index)))
    network.fit(batches, epochs=epochs, verbose=verbose)
    return network


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of features (n, E) (Heusel et al. 2017, eq. 6):

        ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))

    Tr((C_a C_b)^(1/2)) is the sum of the square roots of the eigenvalues of C_a^(1/2) C_b C_a^(1/2), which is
    symmetric: no general matrix square root is needed."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    covariance_a, covariance_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # (E, E)
    values, vectors = np.linalg.eigh(covariance_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T  # C_a^(1/2)
    cross = np.linalg.eigvalsh(root_a @ covariance_b @ root_a)  # eigenvalues of C_a^(1/2) C_b C_a^(1/2)
    trace_root = np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(np.sum(np.square(mean_a - mean_b)) + np.trace(covariance_a) + np.trace(covariance_b)
                 - 2.0 * trace_root)


def _entropy_bits(positions: np.ndarray, num_positions: int) -> float:
    """Entropy in bits of the distribution of predicted positions (n,): log2(num_positions) when uniform."""
    frequencies = np.bincount(positions, minlength=num_positions) / len(positions)
    frequencies = frequencies[frequencies > 0]
    return float(-(frequencies * np.log2(frequencies)).sum()) + 0.0  # + 0.0: no -0.0 for a single position


class AnatomyJudge:
    """Judges sets of generated slices by their anatomy (see `anatomy_metrics`) against fixed references, whose part
    of the work (their embeddings, the test slices' nearest training slices) is done once for every set judged.

    Args:
        network: a trained `SlicePositionNetwork`.
        test: real test slices, the reference every set is compared with.
        unseen: other real slices the models never saw (the validation split): the real baseline.
        unseen_reconstructions: the VQ-VAE's reconstructions of `unseen`, in the same order: the reconstruction
            baseline, the best a prior over this VQ-VAE can reach.
        train: the training slices, for memorisation.
        count: how many slices of each set are compared, at most len(test) and len(unseen). Default: the smaller.
        seed: seed of the subsets drawn when the sets are larger than `count`.

    Every image set is (n, S, S, 1) in [0, 1].
    """

    def __init__(self, network: SlicePositionNetwork, test: np.ndarray, unseen: np.ndarray,
                 unseen_reconstructions: np.ndarray, train: np.ndarray, count: int | None = None, seed: int = 0):
        most = min(len(test), len(unseen))
        self.count = most if count is None else count
        if not 0 < self.count <= most:
            raise ValueError(f"count must be between 1 and {most} (the test and unseen slices), got {count}")
        self.network, self.train, self._test_nearest = network, train, None
        chosen = np.sort(np.random.default_rng(seed).choice(len(unseen), self.count, replace=False))
        self.references = {"test": real_sample(test, self.count, seed),
                           "real": np.asarray(unseen, np.float32)[chosen],
                           "reconstructed": np.asarray(unseen_reconstructions, np.float32)[chosen]}
        self.embeddings = {name: _embed(network, images) for name, images in self.references.items()}  # (count, E)

    def __call__(self, generated: np.ndarray, memorisation: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
        """The metrics of `count` generated slices spread evenly over `generated` (all of them when there are
        `count`; slices drawn position after position are then spread over the positions, not the lowest ones), and
        the network's predicted positions of each set; see `anatomy_metrics`. Without `memorisation`, the
        memorisation figures (the costly part: SSIM against every training slice) are left out."""
        if len(generated) < self.count:
            raise ValueError(f"need at least {self.count} generated slices, got {len(generated)}")
        generated = np.asarray(generated, np.float32)[spread(len(generated), self.count)]
        embeddings = {**self.embeddings, "generated": _embed(self.network, generated)}
        features = _standardised(embeddings, "test")
        fd = {name: frechet_distance(features[name], features["test"])
              for name in ("generated", "real", "reconstructed")}
        probabilities = {name: tf.nn.softmax(self.network.logits(values)).numpy()  # the head on the same embeddings
                         for name, values in embeddings.items()}  # (count, num_positions) each
        predicted = {name: p.argmax(axis=1) for name, p in probabilities.items()}
        metrics = {
            "anatomy_slices": self.count,
            "fd": fd["generated"], "fd_real": fd["real"], "fd_reconstructed": fd["reconstructed"],
            "fd_ratio_to_real": fd["generated"] / fd["real"],
            "fd_ratio_to_reconstructed": fd["generated"] / fd["reconstructed"],
            "position_confidence": float(probabilities["generated"].max(axis=1).mean()),
            "real_position_confidence": float(probabilities["test"].max(axis=1).mean()),
            "reconstructed_position_confidence": float(probabilities["reconstructed"].max(axis=1).mean()),
            "position_entropy_bits": _entropy_bits(predicted["generated"], self.network.num_positions),
            "real_position_entropy_bits": _entropy_bits(predicted["test"], self.network.num_positions),
        }
        if memorisation:
            metrics.update(self._memorisation(generated))
        return metrics, predicted

    def _memorisation(self, generated: np.ndarray) -> dict:
        if self._test_nearest is None:
            self._test_nearest = _nearest_train_brain_ssim(self.references["test"], self.train)
        nearest = _nearest_train_brain_ssim(generated, self.train)
        threshold = float(np.percentile(self._test_nearest, MEMORISATION_PERCENTILE))
        return {
            "nearest_train_brain_ssim": float(nearest.mean()),
            "real_nearest_train_brain_ssim": float(self._test_nearest.mean()),
            "memorised_fraction": float((nearest > threshold).mean()),
            "real_memorised_fraction": float((self._test_nearest > threshold).mean()),
            "memorisation_threshold": threshold,
        }


def anatomy_metrics(network: SlicePositionNetwork, generated: np.ndarray, test: np.ndarray, unseen: np.ndarray,
                    unseen_reconstructions: np.ndarray, train: np.ndarray, seed: int = 0
                    ) -> tuple[dict, dict[str, np.ndarray]]:
    """How anatomical generated slices are; every image set (n, S, S, 1) in [0, 1]. One set judged by an
    `AnatomyJudge` (which takes the other arguments); to judge several against the same references, use that.

    Returns:
        The metrics, and the network's predicted positions {'generated': (count,), 'test': (count,), ...} of each
        set of `anatomy_slices` slices (`count` generated slices spread evenly over them), count being the size of
        the smallest of generated, test and unseen:

        * `fd`: Fréchet distance of the generated slices' embeddings to the test slices'; `fd_real` and
          `fd_reconstructed` the same for the two baselines; `fd_ratio_to_real`, `fd_ratio_to_reconstructed` (1 or
          less: as good as that baseline). All with the same number of slices in every set, `anatomy_slices`: FD
          is biased upward for small sets, so only figures of equal set sizes compare.
        * `position_confidence`: the network's mean probability of its predicted position on generated slices,
          beside `real_position_confidence` on test slices and `reconstructed_position_confidence` on the
          reconstructions of unseen slices (the most a prior over this VQ-VAE can expect); `position_entropy_bits` and
          `real_position_entropy_bits`, the entropy of the predicted positions (5 bits: spread evenly over 32).
        * `nearest_train_brain_ssim`: each generated slice's highest SSIM against any training slice, averaged over
          its brain only; `real_nearest_train_brain_ssim` the same for test slices. `memorised_fraction`: the
          fraction of generated slices whose figure exceeds the 99th percentile of the test slices' figures
          (`memorisation_threshold`); `real_memorised_fraction`, the same fraction of test slices (about 1%).
    """
    count = min(len(generated), len(test), len(unseen))
    judge = AnatomyJudge(network, test, unseen, unseen_reconstructions, train, count, seed)
    return judge(generated)


def _nearest_train_brain_ssim(images: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Each image's highest SSIM against any training slice, averaged over its brain only, (n,)."""
    return pairwise_ssim(images, train, region="brain").max(axis=1)


def _standardised(features: dict[str, np.ndarray], reference: str) -> dict[str, np.ndarray]:
    """Every set's features (n, E) less the reference set's mean and divided by its spread per feature, floored at
    a tenth of the mean spread: features differ in scale by orders of magnitude (the early stages' texture features
    are small), and without this the Fréchet distance sees only the largest; the floor keeps features the
    reference barely uses (a ReLU that is nearly always 0) from dominating instead."""
    mean, spread = features[reference].mean(axis=0), features[reference].std(axis=0)
    scale = np.maximum(spread, 0.1 * spread.mean()) + 1e-12
    return {name: (values - mean) / scale for name, values in features.items()}


def _embed(network: SlicePositionNetwork, images: np.ndarray) -> np.ndarray:
    """The network's embeddings (n, E) of images (n, S, S, 1), 64 at a time: called directly rather than through
    `predict`, so that it runs inside any tf.distribute strategy's scope."""
    return np.concatenate([network.embed(images[i:i + 64], training=False).numpy()
                           for i in range(0, len(images), 64)])
