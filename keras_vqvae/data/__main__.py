"""`python -m keras_vqvae.data {verify,make-sample,make-lesions}`: check an OASIS copy, write the embedded synthetic
data, or write a split of it with synthetic lesions and their masks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from keras_vqvae import cli
from keras_vqvae import plots
from keras_vqvae.data.lesions import LESION_KINDS, image_folder, mask_folder, write_lesions
from keras_vqvae.data.manifest import verify_copy
from keras_vqvae.data.synthetic import ANNOUNCEMENT, SPLITS, SubjectSplit, write_sample
from keras_vqvae.priors.sampler import MAX_SEED


@cli.argument_type
def _seed(text: str) -> int:
    """A seed for argparse's type=: a whole number from 0 to MAX_SEED."""
    if not text.strip().isdigit() or int(text) > MAX_SEED:
        raise ValueError(f"the seed must be a whole number between 0 and {MAX_SEED}, got {text!r}")
    return int(text)


@cli.main_with_errors
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m keras_vqvae.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=cli.ArgumentParser)
    verify = commands.add_parser("verify", help="compare an OASIS copy with the shipped manifest, file by file "
                                                "(exit status 1 when anything differs)")
    verify.add_argument("folder", help="the folder that holds keras_png_slices_train, _validate, _test")
    sample = commands.add_parser("make-sample", help="write the embedded synthetic data in the OASIS layout")
    sample.add_argument("folder", help="a new or empty folder to write into")
    sample.add_argument("--subjects", type=cli.argument_type(SubjectSplit.parse), default=SubjectSplit(),
                        metavar="TRAIN,VALIDATE,TEST",
                        help="virtual subjects per split (default: 48,8,8)")
    sample.add_argument("--seed", type=_seed, default=0, help="seed of the virtual subjects (default: 0)")
    lesions = commands.add_parser("make-lesions", help="write one split of the embedded data with synthetic lesions "
                                                       "inserted, and their masks (for python -m keras_vqvae.detect)")
    lesions.add_argument("folder", help="a new or empty folder to write into")
    lesions.add_argument("--kind", choices=list(LESION_KINDS), default="bright",
                         help="; ".join(f"{kind.name}: {kind.description}".replace("%", "%%")
                                        for kind in LESION_KINDS.values())
                              + " (default: bright)")
    lesions.add_argument("--split", choices=SPLITS, default="test", help="the split to insert lesions into (default: "
                                                                        "test; validate, to tune on)")
    lesions.add_argument("--lesion-rate", type=cli.finite_float, default=0.5,
                         help="fraction of the slices that get lesions, in (0, 1] (default: 0.5)")
    lesions.add_argument("--subjects", type=cli.argument_type(SubjectSplit.parse), default=SubjectSplit(),
                         metavar="TRAIN,VALIDATE,TEST", help="virtual subjects per split, as for make-sample and the "
                                                             "train command's --synthetic-subjects (default: 48,8,8)")
    lesions.add_argument("--seed", type=_seed, default=0, help="seed of the virtual subjects and of the lesions, as "
                                                               "the run's --seed (default: 0)")
    arguments = parser.parse_args(argv)

    if arguments.command == "verify":
        reports = verify_copy(arguments.folder)
        for report in reports:
            print(report.describe())
        needed = [r for r in reports if not r.is_segmentation or r.present]
        ok = all(r.ok for r in needed)
        print("the copy matches the manifest" if ok else "the copy differs from the manifest: see the lines above")
        return 0 if ok else 1

    if arguments.command == "make-lesions":
        count, lesioned = write_lesions(arguments.folder, arguments.kind, arguments.split, arguments.subjects,
                                        arguments.seed, arguments.lesion_rate)
        root = Path(arguments.folder)
        print(f"wrote {count} slices of the {arguments.split} split, {lesioned} of them with {arguments.kind} lesions, "
              f"to {image_folder(root, arguments.split)} and their masks to {mask_folder(root, arguments.split)}. "
              f"{ANNOUNCEMENT}")
        return 0

    count = write_sample(arguments.folder, arguments.subjects, arguments.seed)
    root = Path(arguments.folder)
    shown = [next(root.glob(f"*/case_{case:03d}_slice_{n}.nii.png")) for case in (1, 2, 3) for n in range(0, 32, 4)]
    preview = root / "preview.png"
    plots.plot_grid(np.stack([np.asarray(Image.open(path)) for path in shown]), preview, columns=8,
                    title="synthetic virtual subjects 001-003 (MNI152 template, not OASIS): every 4th slice")
    print(f"wrote {count} slices and {preview} to {arguments.folder}. {ANNOUNCEMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
