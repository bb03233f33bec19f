"""effkit: the helper package of the efficient fine-tuning kit.

``import effkit as ek`` gives every chapter the same tools: ``ek.data``, ``ek.models``,
``ek.grad``, ``ek.results``, ``ek.check`` ... and ``ek.show(obj)`` to read their source;
``ek.claim(...)`` and its typed forms check a sentence of the prose against the run's numbers.
"""
import importlib
import importlib.util
import logging
import os
import warnings

# No model hub at run time: the packaged MiniLM and cached data are all effkit needs.
if os.environ.get("EFFKIT_ALLOW_DOWNLOAD", "0") != "1":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# torchao (imported by transformers) warns that its CUDA-only kernels do not load on a CPU machine,
# and torch warns about a deprecation inside torchao. Neither affects effkit; keep chapters readable.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

# bitsandbytes, imported on a CPU with AVX512-BF16, tries the optional `kernels` package for a
# faster 4-bit CPU matmul and logs a warning when it is not installed (effkit does not need it).
# Only that one message is dropped; the logger's other messages stay.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community"))

# Library warnings a student cannot act on, each silenced by its exact message, category and
# module and nothing wider. effkit's own warnings (truncation, unusable cache entries) stay on.
# transformers' property is read by peft when it wraps a model, not by effkit.
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                        category=FutureWarning, module=r"transformers\.modeling_utils")

from .config import device, pick, profile, seed_everything  # noqa: E402
from .show import show  # noqa: E402
from .claims import claim, claim_at_least, claim_at_most, claim_ratio  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # Submodules (ek.data, ek.train, ...) load on first use so `import effkit` stays quick.
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'effkit' has no attribute {name!r}")
