"""Shared settings of the training tests."""
from pathlib import Path

TINY = str(Path(__file__).parent / "tiny_mlla.yaml")
# deterministic: no augmentation, no mixup, no drop path; 2 epochs of at most 6 steps of 32 images
FAST = ["--recipe", "proxy", "--batch-size", "32", "--lr", "1e-2", "--recipe-set", "crop_padding=0",
        "--recipe-set", "max_steps_per_epoch=6", "--epochs", "2", "--device", "cpu", "--no-progress"]
