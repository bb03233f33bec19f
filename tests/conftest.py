import os

import pytest

os.environ.setdefault("EFFKIT_PROFILE", "fast")


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_slow = pytest.mark.skip(reason="slow: set EFFKIT_SLOW=1 to run")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and os.environ.get("EFFKIT_SLOW") != "1":
            item.add_marker(skip_slow)
