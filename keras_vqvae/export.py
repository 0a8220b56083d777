"""`python -m keras_vqvae.export RUN_DIR --out DIR`: a trained run as a TensorFlow SavedModel that runs without this
package, with its model card (see `keras_vqvae.savedmodel` for the endpoints)."""

from __future__ import annotations

import sys

from keras_vqvae import cli
from keras_vqvae.anomaly import detection_problem
from keras_vqvae.priors import PRIOR_KINDS
from keras_vqvae.savedmodel import export_run
from keras_vqvae.training.run_folder import RunFolder


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m keras_vqvae.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by python -m keras_vqvae.train")
    parser.add_argument("--out", default=None,
                        help=f"folder for the SavedModel (default: RUN_DIR/{RunFolder.EXPORT_FOLDER})")
    parser.add_argument("--prior", choices=(*PRIOR_KINDS, "none"), default=None,
                        help="the run's prior behind the sample endpoint, or none (default: the one train exports: "
                             "the prior trained last, else another the run holds that was trained on its VQ-VAE)")
    arguments = parser.parse_args(argv)
    if arguments.prior is None:
        prior = RunFolder(arguments.run_dir).current_prior()
    else:
        prior = None if arguments.prior == "none" else arguments.prior
    out = export_run(arguments.run_dir, arguments.out, prior)
    endpoints = "encode, decode, reconstruct" + (", sample" if prior else "") + (
        ", anomaly" if prior and not detection_problem(PRIOR_KINDS[prior]) else "")
    print(f"wrote a SavedModel ({endpoints}, serving_default) and its model card README.md to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
