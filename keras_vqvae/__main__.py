"""`python -m keras_vqvae`: a short guide to the commands."""

GUIDE = """keras_vqvae: a VQ-VAE that learns a discrete code of brain MRI slices, and a prior that generates new ones.

Commands:
  python -m keras_vqvae.train [--data DIR] [--run-dir DIR] ...   train (or resume) a VQ-VAE and a prior over its
                                                                  codes (--prior pixelcnn, transformer or dcgan)
  python -m keras_vqvae.predict RUN_DIR [--prior P] ...           generate slices, or --reconstruct a folder
  python -m keras_vqvae.export RUN_DIR [--out DIR] [--prior P]    a TensorFlow SavedModel that runs without this
                                                                  package (train writes one to RUN_DIR/saved_model)
  python -m keras_vqvae.detect RUN_DIR --images DIR ...           anomaly maps: what the run's prior finds unlikely
                                                                  in each slice (--masks DIR to measure them)
  python -m keras_vqvae.data verify DIR                           check an OASIS copy against the shipped manifest
  python -m keras_vqvae.data make-sample DIR                      write the embedded synthetic data set to DIR
  python -m keras_vqvae.data make-lesions DIR                     write a split of it with synthetic lesions and
                                                                  their masks

With no --data, train uses the embedded synthetic data (virtual subjects from the MNI152 template, not OASIS)."""

if __name__ == "__main__":
    print(GUIDE)
