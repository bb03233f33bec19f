"""Memory per rank when training is sharded: DDP, ZeRO stages 1/2/3 and FSDP.

Data parallelism copies everything to every rank. ZeRO (Rajbhandari et al. 2020, DeepSpeed) and
PyTorch's FSDP split the copies instead: each of the ``N`` ranks keeps ``1 / N`` of

- stage 1 (``ZeRO-1``): the optimizer state;
- stage 2 (``ZeRO-2``, FSDP ``SHARD_GRAD_OP``): the optimizer state and the gradients;
- stage 3 (``ZeRO-3``, FSDP ``FULL_SHARD``): those and the weights themselves, each layer's
  weights gathered from all ranks just before it runs and dropped right after.

Bytes per parameter, for Adam (two moments):

========================  =======  =========  ===============
precision                 weights  gradients  optimizer state
========================  =======  =========  ===============
``fp32`` (this kit)       4        4          8 (m, v)
``mixed`` (bf16 + fp32)   2        2          12 (fp32 master copy, m, v)
========================  =======  =========  ===============

Both add up to 16 bytes per parameter unsharded. Activations are left out: they depend on batch
and sequence length, not on the sharding (chapter 02b measures them).
"""
from __future__ import annotations

BYTES_PER_PARAM = {"fp32": {"weights": 4, "gradients": 4, "optimizer_state": 8},
                   "mixed": {"weights": 2, "gradients": 2, "optimizer_state": 12}}
STAGES = {"DDP": (), "ZeRO-1": ("optimizer_state",),
          "ZeRO-2 / FSDP SHARD_GRAD_OP": ("optimizer_state", "gradients"),
          "ZeRO-3 / FSDP FULL_SHARD": ("optimizer_state", "gradients", "weights")}
PARTS = ("weights", "gradients", "optimizer_state")


def per_rank_bytes(num_params: int, world: int, stage: str, precision: str = "mixed") -> dict:
    """``{"weights", "gradients", "optimizer_state", "total"}``: bytes each rank holds.

    num_params: trainable parameters (all of them train here). world: ranks sharing the model.
    stage: a key of :data:`STAGES`. precision: ``"fp32"`` or ``"mixed"``.
    Sharded parts are divided by ``world`` (rounded up to whole parameters per rank).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"precision must be one of {list(BYTES_PER_PARAM)}, got {precision!r}")
    if not isinstance(world, int) or world < 1:
        raise ValueError(f"world must be an int >= 1, got {world!r}")
    if num_params < 0:
        raise ValueError(f"num_params must be >= 0, got {num_params}")
    share = -(-num_params // world)  # ceil: the last rank's shard is padded
    out = {part: BYTES_PER_PARAM[precision][part] * (share if part in STAGES[stage] else num_params)
           for part in PARTS}
    out["total"] = sum(out.values())
    return out


def table(models: dict[str, int], worlds=(1, 2, 8, 64), precision: str = "mixed"):
    """A pandas DataFrame, one row per (model, stage, world): GiB per rank of each part."""
    import pandas as pd

    rows = []
    for name, n in models.items():
        for stage in STAGES:
            for world in worlds:
                if stage == "DDP" and world != worlds[0]:
                    continue  # nothing is sharded: the same at every world size
                b = per_rank_bytes(n, world, stage, precision)
                rows.append({"model": name, "stage": stage, "ranks": world,
                             **{f"{k} GiB": v / 2**30 for k, v in b.items()}})
    return pd.DataFrame(rows)
