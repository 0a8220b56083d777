"""`python -m keras_vqvae.train`: train a VQ-VAE, then a prior over its codes (a gated PixelCNN, a transformer or a
DCGAN), into a run folder; running the same command again resumes it.

The run folder holds the configuration, per-epoch checkpoints, the trained models, their code maps, metrics,
TensorBoard logs, pictures and a SavedModel export (see `keras_vqvae.training.run_folder`). A run killed at any
moment (even with SIGKILL) loses at most the epoch in progress.
"""

from __future__ import annotations

import sys

from keras_vqvae import cli
from keras_vqvae.errors import InputError
from keras_vqvae.savedmodel import export_run
from keras_vqvae.training.config import TrainConfig
from keras_vqvae.training.pipeline import STAGES, train
from keras_vqvae.training.run_folder import VQVAE_STAGE, RunFolder


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m keras_vqvae.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, default="all",
                        help="what to train: the VQ-VAE, the prior over its codes (needs a trained VQ-VAE in the run "
                             "folder), or both (default: all)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars or stage messages, for scripts: only notes, warnings and the final "
                             "figures")
    parser.add_argument("--no-export", action="store_true",
                        help="leave out the SavedModel export at the end (python -m keras_vqvae.export RUN_DIR "
                             "makes it later)")
    cli.add_config_arguments(parser, TrainConfig)
    arguments = parser.parse_args(argv)
    config = cli.config_from_arguments(TrainConfig, arguments)
    run = RunFolder(config.run_dir)
    if arguments.stage == "prior" and "epochs" in cli.given_fields(TrainConfig, arguments):
        trained = run.checkpoints(VQVAE_STAGE).epochs()
        if trained and trained != config.epochs:
            raise InputError(f"--epochs {config.epochs} sets the VQ-VAE's epochs, and --stage prior trains only the "
                             f"prior, over the run's VQ-VAE of {trained} epochs: leave --epochs out, or train the "
                             f"VQ-VAE on with --stage all --epochs {config.epochs}")
    verbose = 0 if arguments.quiet else 1 if sys.stdout.isatty() else 2
    results = train(config, arguments.stage, verbose=verbose)
    if not arguments.no_export:
        prior = run.current_prior()  # after --stage vqvae too, the prior the run holds for this VQ-VAE
        exported = export_run(run.path, run.export_path, prior)
        print(f"exported the VQ-VAE{'' if prior is None else ' and the ' + prior} as a SavedModel to {exported}")
    for outdated in run.outdated_priors():
        print(f"note: the run's {outdated} prior was trained on an earlier VQ-VAE: train it again with --stage prior "
              f"--prior {outdated} to sample with it")
    if arguments.stage != "prior":
        test = results["vqvae"]["test"]
        print(f"VQ-VAE test: ssim {test['ssim']:.4f}, brain_ssim {test['brain_ssim']:.4f}, psnr {test['psnr']:.2f} dB, "
              f"codebook_usage {test['codebook_usage']:.2f}, perplexity {test['perplexity']:.1f}")
    if arguments.stage != "vqvae":
        prior = results[config.prior]
        print(f"{config.prior} test: " + _listed(prior["test"]))
        print("generation: " + _listed(prior["generation"]))
    print(f"run folder {config.run_dir}")
    return 0


def _listed(values: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


if __name__ == "__main__":
    sys.exit(main())
