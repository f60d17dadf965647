import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """The search tests train many tiny models; one intra-op thread is faster for them on a shared
    2-core machine (no oversubscription) and gives the same numbers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
