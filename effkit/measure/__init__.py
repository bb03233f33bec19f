"""Measuring models, one file per question.

- :mod:`.sizes`: parameter counts, the bytes a model holds, bytes per parameter in each format;
- :mod:`.memory`: the memory of one training step (:func:`memory_breakdown`) and its analytic count;
- :mod:`.timing`: step time (:func:`step_time`) and interleaved comparisons (:func:`compare_step_times`).

Everything public is re-exported here, so ``ek.measure.memory_breakdown`` etc. work as one module.
"""
from .memory import (MEMORY_PARTS, PRECISIONS, analytic_memory, fixed_length_batch, memory_breakdown,
                     storage_bytes, training_step)
from .sizes import (FORMAT_BITS, bytes_by_format, count_parameters, parameter_bytes,
                    parameters_by_module_type, stored_as, tensor_bytes, trainable_summary)
from .timing import compare_step_times, step_time

__all__ = ["FORMAT_BITS", "MEMORY_PARTS", "PRECISIONS", "analytic_memory", "bytes_by_format",
           "compare_step_times", "count_parameters", "fixed_length_batch", "memory_breakdown",
           "parameter_bytes", "parameters_by_module_type", "step_time", "storage_bytes", "stored_as",
           "tensor_bytes", "trainable_summary", "training_step"]
