"""Data parallel training of the real MiniLM classifier: every rank ends with bit-identical
weights; 2 ranks x batch B reproduce one process with batch 2B; gradient accumulation over k
micro-batches reproduces a batch k times larger; the chapter's all-reduce hook (with
dist.all_reduce or the hand-written ring) gives what torch's DistributedDataParallel gives."""
import pytest

import effkit as ek
from effkit import batching
from effkit.dist import ddp, launch

B, STEPS, LENGTH = 4, 3, 32


@pytest.fixture(scope="module")
def encoded():
    _, tok = ek.models.load_encoder("sequence", 2)
    return batching.encode_sentiment(ek.data.load_sentiment().train.take(64, seed=0), tok, LENGTH)


@pytest.fixture(scope="module")
def runs(encoded):
    """One launch of 2 ranks running every DDP variant, and the single-process references."""
    spec = dict(batch_size=B, steps=STEPS, max_length=LENGTH)
    specs = {"hook": ddp.RunSpec(mode="hook", **spec),
             "torch": ddp.RunSpec(mode="torch", **spec),
             "ring": ddp.RunSpec(mode="hook", all_reduce="ring", **spec),
             "accum": ddp.RunSpec(mode="hook", grad_accum_steps=2, **spec)}
    out = launch(ddp.train_worker, 2, (encoded, list(specs.values())), timeout=600)
    by_name = {name: [out[rank][i] for rank in range(2)] for i, name in enumerate(specs)}
    single = {"2B": ddp.train_run(ddp.RunSpec(mode="single", **{**spec, "batch_size": 2 * B}), encoded),
              "4B": ddp.train_run(ddp.RunSpec(mode="single", **{**spec, "batch_size": 4 * B}), encoded)}
    return by_name, single


@pytest.mark.parametrize("name", ["hook", "torch", "ring", "accum"])
def test_parameters_are_identical_on_every_rank(runs, name):
    rank0, rank1 = runs[0][name]
    assert rank0["checksum"] == rank1["checksum"]
    assert rank0["losses"] != rank1["losses"]          # they did train on different data


@pytest.mark.parametrize("name", ["hook", "torch", "ring"])
def test_two_ranks_of_batch_b_reproduce_one_process_with_2b(runs, name):
    ddp_run, single = runs[0][name][0], runs[1]["2B"]
    assert ddp_run["mean_losses"] == pytest.approx(single["losses"], rel=1e-4)
    assert ddp_run["sums"] == pytest.approx(single["sums"], rel=1e-4, abs=1e-4)


def test_accumulation_over_two_micro_batches_on_two_ranks_reproduces_4b(runs):
    acc, single = runs[0]["accum"][0], runs[1]["4B"]
    assert len(acc["losses"]) == STEPS
    assert acc["mean_losses"] == pytest.approx(single["losses"], rel=1e-4)
    assert acc["sums"] == pytest.approx(single["sums"], rel=1e-4, abs=1e-4)


def test_the_own_hook_gives_what_torch_ddp_gives(runs):
    hook, torch_ddp = runs[0]["hook"][0], runs[0]["torch"][0]
    assert hook["mean_losses"] == pytest.approx(torch_ddp["mean_losses"], rel=1e-5)
    assert hook["sums"] == pytest.approx(torch_ddp["sums"], rel=1e-5, abs=1e-5)
    assert len(hook["comm_seconds"]) == STEPS and torch_ddp["comm_seconds"] == []


def test_buckets_group_consecutive_tensors():
    import torch
    ts = [torch.zeros(n) for n in (10, 10, 300, 5)]
    assert [len(b) for b in ddp.buckets(ts, 80)] == [2, 1, 1]
    assert [len(b) for b in ddp.buckets(ts, None)] == [1, 1, 1, 1]


def test_run_spec_and_process_group_checks(encoded):
    with pytest.raises(ValueError, match="mode must be one of"):
        ddp.RunSpec(mode="zero")
    with pytest.raises(RuntimeError, match="needs a process group"):
        ddp.train_run(ddp.RunSpec(mode="hook", steps=1), encoded)
