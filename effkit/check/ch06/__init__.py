"""Checkers for assignment 06: LLM.int8() by hand and bitsandbytes' FP4 data type.

One module per half: ``int8`` (the warm-up and the outlier split), ``fp4`` (levels and blockwise),
and ``plumbing``, what both share.

Oracles:

- ``check_int8_rows`` (the warm-up) and ``check_int8_matmul``: the chapter's own
  ``effkit.quant.int8_vectorwise`` and ``effkit.quant.int8_matmul_with_outliers`` (itself checked
  against ``bitsandbytes.nn.Linear8bitLt`` in tests/test_quant_libs.py), plus the fp32 product
  ``x @ w.T`` for orientation;
- ``check_fp4_levels`` and ``check_fp4_blockwise``: bitsandbytes itself,
  ``get_4bit_type("fp4")``, ``quantize_4bit(..., quant_type="fp4", blocksize=...)`` and
  ``dequantize_4bit``, run on the CPU. The student may number the 16 codes in any order, so
  levels are compared as a set and quantization is compared after dequantizing.

Every case uses shapes a shortcut cannot fit: square weights first (where a scale of the wrong
shape still broadcasts), then wide and tall ones; FP4 weights whose size is a multiple of the
block size but not its square, then sizes that leave a shorter last block, at block sizes 32, 64
and 128. When an answer is wrong, the checker recomputes the classic mistakes and names the one
that matches; if none does, the hint only restates the rule. The student's code is always called
first (an unfinished stub stops with NotImplementedError), and an exception in it becomes a FAIL,
not a traceback.
"""
from .fp4 import check_fp4_blockwise, check_fp4_levels
from .int8 import MATMUL_MISTAKES, check_int8_matmul, check_int8_rows

__all__ = ["MATMUL_MISTAKES", "check_fp4_blockwise", "check_fp4_levels", "check_int8_matmul", "check_int8_rows"]
