"""Training the project's own small AR / masked-diffusion pair (see scripts/train_pair.py)."""
