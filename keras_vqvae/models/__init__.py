"""The VQ-VAE: encoder -> vector quantizer -> decoder (`networks`, `quantizer`, `vqvae`), its adversarial variant
(`adversarial`), and what its custom training steps share with the priors' (`optimization`)."""
