"""The chapter 07 checker passes a correct ring all-reduce and rejects each plausible mistake with
a hint that names it. Every candidate runs in real ranks (2 and 3 spawned processes)."""
import re

import pytest

from effkit.check import ch07


# ---------------------------------------------------------------- the right answer
def ring(tensor, average=False):
    rank, p = dist.get_rank(), dist.get_world_size()  # noqa: F821  (given to the ranks by the checker)
    chunks = torch.tensor_split(tensor.view(-1), p)  # noqa: F821
    right, left = (rank + 1) % p, (rank - 1) % p
    for s in range(p - 1):
        send_i, recv_i = (rank - s) % p, (rank - s - 1) % p
        buf = torch.empty_like(chunks[recv_i])  # noqa: F821
        req = dist.isend(chunks[send_i], dst=right)  # noqa: F821
        dist.recv(buf, src=left)  # noqa: F821
        req.wait()
        chunks[recv_i].add_(buf)
    for s in range(p - 1):
        send_i, recv_i = (rank + 1 - s) % p, (rank - s) % p
        req = dist.isend(chunks[send_i], dst=right)  # noqa: F821
        dist.recv(chunks[recv_i], src=left)  # noqa: F821
        req.wait()
    if average:
        tensor /= p
    return tensor


def test_a_right_answer_passes(capsys):
    ch07.check_ring_all_reduce(ring)
    assert "PASS" in capsys.readouterr().out


# ---------------------------------------------------------------- mutants, one mistake each
def source_with(old, new):
    import inspect
    src = inspect.getsource(ring)
    assert old in src, old
    return src.replace(old, new)


MUTANTS = {
    "not_averaged": (("    if average:\n        tensor /= p\n", ""),
                     r"average=True gives the sum", r"sum was not averaged"),
    "wrong_chunk_order": (("send_i, recv_i = (rank - s) % p, (rank - s - 1) % p",
                           "send_i, recv_i = (rank + s) % p, (rank + s + 1) % p"),
                          r"chunks sent in the wrong order", r"sends chunk \(r - s\) % p"),
    "deadlock_wrong_neighbour": (("dist.recv(buf, src=left)", "dist.recv(buf, src=right)"),
                                 r"deadlock on 3 ranks", r"receives from its left neighbour"),
    "remainder_dropped": (("chunks = torch.tensor_split(tensor.view(-1), p)",
                           "chunks = list(tensor.view(-1)[: tensor.numel() // p * p].view(p, -1))"),
                          r"element\(s\) are wrong when the size is not divisible", r"cover every element"),
    "no_all_gather": (("    for s in range(p - 1):\n        send_i, recv_i = (rank + 1 - s)",
                       "    for s in range(0):\n        send_i, recv_i = (rank + 1 - s)"),
                      r"only some chunks hold the full sum", r"all-gather is missing"),
    "returns_none": (("    return tensor\n", "    return None\n"), r"returned None", r"return it"),
    "uses_a_collective": (("    chunks = torch.tensor_split", "    dist.all_reduce(tensor)\n    chunks = torch.tensor_split"),
                          r"failed on 2 ranks: .*dist.all_reduce is a collective", r"send, recv"),
    "helper_outside": (("    right, left = (rank + 1) % p, (rank - 1) % p",
                        "    right, left = neighbours(rank, p)"),
                       r"failed on 2 ranks: .*NameError.*neighbours", r"keep any helper inside"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_each_mistake_is_rejected_with_a_hint_naming_it(name, monkeypatch):
    (old, new), what, hint = MUTANTS[name]
    source = source_with(old, new)
    monkeypatch.setattr(ch07, "_source", lambda fn: (source, "ring"))
    with pytest.raises(AssertionError) as info:
        ch07.check_ring_all_reduce(ring)
    message = str(info.value)
    assert re.search(what, message), message
    assert re.search(r"hint: .*" + hint, message, re.S), message
    others = [w for n, (_, w, _) in MUTANTS.items() if n != name]
    assert not any(re.search(w, message.splitlines()[0]) for w in others), message


def test_an_unfinished_stub_stops_with_not_implemented(monkeypatch):
    stub = 'def ring(tensor, average=False):\n    raise NotImplementedError("Your code here")\n'
    monkeypatch.setattr(ch07, "_source", lambda fn: (stub, "ring"))
    with pytest.raises(NotImplementedError, match="Your code here"):
        ch07.check_ring_all_reduce(ring)


def test_not_a_function():
    with pytest.raises(AssertionError, match="expected your ring_all_reduce function"):
        ch07.check_ring_all_reduce(None)
