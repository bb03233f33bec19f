import os

import pytest

os.environ.setdefault("EFFKIT_PROFILE", "fast")


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def encoder():
    """The real MiniLM with a sentiment head (seeded), in eval mode: ``(model, tokenizer)``.
    Module-scoped, so a test module that changes it in place does not leak into another."""
    import effkit as ek

    ek.seed_everything(0)
    model, tokenizer = ek.models.load_encoder("sequence", 2)
    return model.eval(), tokenizer
