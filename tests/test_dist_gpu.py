"""The CUDA paths of chapter 07 (run by `make gpu-check`; skipped without CUDA): NCCL data
parallel training on the GPUs present, and bitsandbytes' 8-bit AdamW with its CUDA kernels.
Sized to take well under a minute on one GPU."""
import pytest
import torch

import effkit as ek
from effkit import batching
from effkit.dist import ddp, launch, workers

pytestmark = pytest.mark.gpu


def test_nccl_all_reduce_on_every_gpu():
    n = torch.cuda.device_count()
    out = launch(workers.hello, n, backend="nccl", timeout=300)
    assert {r["backend"] for r in out} == {"nccl"} and {r["sum"] for r in out} == {n * (n + 1) / 2}


def test_nccl_ddp_keeps_ranks_identical_and_matches_one_process():
    n = torch.cuda.device_count()
    _, tok = ek.models.load_encoder("sequence", 2)
    encoded = batching.encode_sentiment(ek.data.load_sentiment().train.take(64, seed=0), tok, 32)
    spec = dict(batch_size=4, steps=3, max_length=32)
    out = launch(ddp.train_worker, n, (encoded, [ddp.RunSpec(mode="torch", **spec),
                                                  ddp.RunSpec(mode="hook", **spec)]),
                 backend="nccl", timeout=300)
    for i in range(2):
        assert len({out[rank][i]["checksum"] for rank in range(n)}) == 1
    single = ddp.train_run(ddp.RunSpec(mode="single", **{**spec, "batch_size": 4 * n}), encoded)
    assert out[0][0]["mean_losses"] == pytest.approx(single["losses"], rel=1e-3)


def test_bitsandbytes_adamw8bit_steps_on_cuda():
    import bitsandbytes as bnb

    p = torch.nn.Parameter(torch.randn(4096, 1024, device="cuda"))
    optimizer = bnb.optim.AdamW8bit([p], lr=1e-3)
    before = p.detach().clone()
    p.grad = torch.randn_like(p)
    optimizer.step()
    state = optimizer.state[p]
    assert state["state1"].dtype == torch.uint8 and state["state1"].is_cuda
    assert not torch.equal(before, p.detach())
