"""Quantization (chapter 06): uniform affine 2-8 bit, NF4, LLM.int8(), quantized layers, the PTQ
grid against bitsandbytes and torchao, and the bits explorer.

- ``effkit.quant.affine``: integer codes, scales and zero points, per tensor / channel / group;
- ``effkit.quant.nf4``: the NormalFloat4 data type with double quantization (QLoRA);
- ``effkit.quant.layers``: LLM.int8() with outliers, ``QuantLinear``, ``quantize_model``;
- ``effkit.quant.ptq``: quantized copies of a classifier, measured bytes, the grid;
- ``effkit.quant.bits_explorer``: the bits slider and its figures.

The public names of the first three are also here: ``ek.quant.quantize``, ``ek.quant.quantize_nf4``.
"""
import importlib

from .affine import (GRANULARITIES, SCHEMES, QuantizedTensor, StoredTensors, analytic_bytes,  # noqa: F401
                     check_bits, check_float_tensor, dequantize, dequantize_rows, fake_quantize,
                     integer_range, pack_bits, quantize, quantize_rows, rows_view, scale_and_zero,
                     unpack_bits)
from .layers import (METHODS, OUTLIER_THRESHOLD, QuantLinear, QuantReport,  # noqa: F401
                     count_outlier_columns, int8_matmul_with_outliers, int8_vectorwise,
                     outlier_columns, quantize_model)
from .nf4 import NF4Tensor, dequantize_nf4, nf4_levels, quantize_nf4  # noqa: F401


def __getattr__(name):
    # The grid and the explorer need plotly, pandas and the libraries; they load on first use.
    if name in ("ptq", "bits_explorer"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
