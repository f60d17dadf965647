from pathlib import Path

import pytest

HERE = Path(__file__).parent
TINY = str(HERE / "tiny_mlla.yaml")
# deterministic: no augmentation, no mixup, no drop path; 2 epochs of at most 6 steps of 32 images
FAST = ["--recipe", "proxy", "--batch-size", "32", "--lr", "1e-2", "--recipe-set", "crop_padding=0",
        "--recipe-set", "max_steps_per_epoch=6", "--epochs", "2", "--device", "cpu", "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)      # the subprocesses of these tests run with one thread: same numbers
    yield
