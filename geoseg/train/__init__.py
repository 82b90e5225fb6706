"""Training: chip datasets, sampling with augmentation, and the training loop."""
