"""One torch thread per test process: the CI machine's cores are shared, and oversubscribed
intra-op threads slow small-tensor tests by orders of magnitude."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
