"""effkit's quantizers against the libraries: bitsandbytes 0.50.2 and torchao 0.18, on CPU.

All of these ops run on CPU in the pinned versions (bitsandbytes' default/CPU backends, torchao's
Int8 configs); a test skips, and says which op, only if that op raises NotImplementedError here.
The CUDA kernels are compared in the tests marked ``gpu``.
"""
import copy

import pytest
import torch
from torch import nn

import effkit as ek
from effkit import quant as Q

bnb_functional = pytest.importorskip("bitsandbytes.functional")


@pytest.fixture(scope="module")
def real_weights(encoder):
    """The Linear weights of the first and last encoder layer, and the position embeddings."""
    model, _ = encoder
    layers = (model.bert.encoder.layer[0], model.bert.encoder.layer[5])
    weights = {f"layer{i}.{n}": m.weight.detach().clone()
               for i, layer in zip((0, 5), layers)
               for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
    weights["position_embeddings"] = model.bert.embeddings.position_embeddings.weight.detach().clone()
    return weights


@pytest.fixture(scope="module")
def real_activations(encoder):
    """Inputs of layer 0's FFN (after LayerNorm) on real sentences: (tokens, 384), with outliers."""
    model, tokenizer = encoder
    texts = ek.data.load_sentiment().dev.take(16, seed=1).texts
    batch = tokenizer(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    seen = []
    handle = model.bert.encoder.layer[0].intermediate.dense.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach()))
    with torch.no_grad():
        model(**batch)
    handle.remove()
    return seen[0][batch["attention_mask"].bool()]


def _library_op(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:                  # pragma: no cover - depends on build
        pytest.skip(f"{fn.__name__} is not available on CPU in this bitsandbytes build: {err}")


# ---------------------------------------------------------------- NF4
def test_nf4_levels_equal_bitsandbytes_table():
    table = bnb_functional.get_4bit_type("nf4", device="cpu")
    ours = Q.nf4_levels()
    # bitsandbytes builds its quantile points with float32 linspace, we use float64: the two
    # tables differ by about 2e-7, float32 rounding, and the codes they produce are identical.
    assert (ours - table).abs().max() < 1e-6


def test_nf4_levels_match_bitsandbytes_construction_when_scipy_is_there():
    pytest.importorskip("scipy")
    full = bnb_functional.create_normal_map()          # 256 entries: 16 levels + zero padding
    levels = torch.unique(full)
    assert levels.numel() == 16
    assert (Q.nf4_levels() - levels).abs().max() < 1e-6


def test_nf4_codes_and_values_equal_bitsandbytes_on_real_weights(real_weights):
    for name, w in real_weights.items():
        packed, state = _library_op(bnb_functional.quantize_4bit, w, blocksize=64, quant_type="nf4")
        ours = Q.quantize_nf4(w, 64)
        assert torch.equal(ours.absmax, state.absmax), name
        assert torch.equal(ours.codes, packed.reshape(-1)), f"{name}: packed NF4 codes differ"
        theirs = bnb_functional.dequantize_4bit(packed, state)
        assert (Q.dequantize_nf4(ours) - theirs).abs().max() < 1e-6, name


def test_nf4_double_quant_close_to_bitsandbytes(real_weights):
    w = real_weights["layer0.intermediate.dense"]
    packed, state = _library_op(bnb_functional.quantize_4bit, w, blocksize=64, quant_type="nf4",
                                compress_statistics=True)
    ours = Q.quantize_nf4(w, 64, double_quant=True)
    plain = Q.quantize_nf4(w, 64)
    assert torch.equal(ours.codes, packed.reshape(-1))          # codes come from fp32 absmax
    assert torch.allclose(ours.absmax_offset, state.offset)     # both subtract the mean
    theirs = bnb_functional.dequantize_4bit(packed, state)
    # Second-level codes differ on purpose: we use linear int8 (effkit.quant) where bitsandbytes
    # uses its 8-bit dynamic map. Both reconstruct the block constants to about 1% on average
    # (more for the smallest constants, which sit far from the 256-block's largest one).
    rel_ours = (ours.block_absmax() - plain.absmax).abs() / plain.absmax
    theirs_absmax = bnb_functional.dequantize_blockwise(state.absmax, state.state2) + state.offset
    rel_theirs = (theirs_absmax - plain.absmax).abs() / plain.absmax
    assert rel_ours.mean() < 0.01 and rel_theirs.mean() < 0.01, (rel_ours.mean(), rel_theirs.mean())
    assert rel_ours.max() < 0.1 and rel_theirs.max() < 0.1, (rel_ours.max(), rel_theirs.max())
    assert (Q.dequantize_nf4(ours) - theirs).abs().max() < 0.01 * w.abs().max()
    # Bits per parameter: bitsandbytes stores 8-bit codes, fp32 absmax per 256 and the
    # 256-entry fp32 code table; ours the same minus the table.
    assert ours.constant_bits_per_parameter() < 0.135


def test_nf4_layer_output_matches_bitsandbytes_linear4bit(encoder):
    bnb = pytest.importorskip("bitsandbytes")
    model, _ = encoder
    linear = model.bert.encoder.layer[2].output.dense                 # 384 x 1536
    theirs = bnb.nn.Linear4bit(linear.in_features, linear.out_features, quant_type="nf4",
                               compute_dtype=torch.float32)
    theirs.load_state_dict(linear.state_dict())
    theirs = _library_op(theirs.to, "cpu")
    ours = Q.QuantLinear.from_linear(linear, "nf4", blocksize=64)
    x = torch.randn(5, linear.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact, a, b = linear(x), ours(x), _library_op(theirs, x).float()
    # Same NF4 weights, but bitsandbytes' CPU kernel multiplies in bfloat16: agreement to the
    # bf16 rounding, and both as far from the float32 layer as 4 bits make them.
    assert ((a - b).norm() / b.norm()).item() < 0.01
    err_ours = ((a - exact).norm() / exact.norm()).item()
    err_lib = ((b - exact).norm() / exact.norm()).item()
    assert abs(err_ours - err_lib) < 0.25 * err_lib, (err_ours, err_lib)


# ---------------------------------------------------------------- LLM.int8()
def test_int8_vectorwise_equals_bitsandbytes_on_real_weights(real_weights):
    for name, w in real_weights.items():
        codes, row_absmax, _ = _library_op(bnb_functional.int8_vectorwise_quant, w.clone())
        ours = Q.int8_vectorwise(w)
        # bitsandbytes stores the absmax and multiplies by 127/absmax; we store absmax/127 and
        # divide. A value a hair from a .5 tie can round either way: allow one step, rarely.
        assert torch.allclose(ours.scale * 127, row_absmax, rtol=1e-6), name
        diff = (ours.int_codes() - codes.to(torch.int32)).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3, (name, int((diff > 0).sum()))


def test_int8_outlier_columns_equal_bitsandbytes_on_real_activations(real_activations):
    x = real_activations
    _, _, theirs = _library_op(bnb_functional.int8_vectorwise_quant, x.clone(), threshold=6.0)
    ours = Q.outlier_columns(x, 6.0).nonzero().flatten()
    assert ours.numel() > 0, "layer 0's FFN input has outlier features on real text"
    assert ours.tolist() == theirs.tolist()


def test_int8_matmul_close_to_bitsandbytes_linear8bitlt(encoder, real_activations):
    bnb = pytest.importorskip("bitsandbytes")
    model, _ = encoder
    linear = model.bert.encoder.layer[0].intermediate.dense
    theirs = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features,
                                 has_fp16_weights=False, threshold=6.0)
    theirs.load_state_dict(linear.state_dict())
    theirs = _library_op(theirs.to, "cpu")                     # quantizes the weight here
    x = real_activations
    with torch.no_grad():
        exact, ours = linear(x), Q.int8_matmul_with_outliers(x, linear.weight, 6.0, linear.bias)
        lib = _library_op(theirs, x)
    # bitsandbytes rounds weights and activations through float16 first, so the two int8
    # results are not bit-equal; both sit about as close to the float32 product.
    err_ours = ((ours - exact).norm() / exact.norm()).item()
    err_lib = ((lib.float() - exact).norm() / exact.norm()).item()
    assert err_ours < 0.02 and err_lib < 0.02, (err_ours, err_lib)
    assert err_ours < 2 * err_lib + 1e-3, (err_ours, err_lib)


# ---------------------------------------------------------------- torchao
@pytest.fixture(scope="module")
def sentences(encoder):
    _, tokenizer = encoder
    texts = ek.data.load_sentiment().dev.take(8, seed=2).texts
    return tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")


def _last_hidden(model, batch):
    with torch.no_grad():
        h = model(**batch, output_hidden_states=True).hidden_states[-1]
    return h[batch["attention_mask"].bool()]


@pytest.mark.parametrize("config_name", ["Int8WeightOnlyConfig",
                                         "Int8DynamicActivationInt8WeightConfig"])
def test_torchao_int8_runs_on_the_real_model_and_agrees_with_effkit(encoder, sentences, config_name):
    torchao_q = pytest.importorskip("torchao.quantization")
    model, _ = encoder
    ref = _last_hidden(model, sentences)

    theirs = copy.deepcopy(model)
    torchao_q.quantize_(theirs, getattr(torchao_q, config_name)())
    ours = copy.deepcopy(model)
    method = "affine" if config_name == "Int8WeightOnlyConfig" else "int8"
    Q.quantize_model(ours, method, 8 if method == "affine" else None, skip=(),
                     **({"threshold": None} if method == "int8" else {}))

    err_theirs = ((_last_hidden(theirs, sentences) - ref).norm() / ref.norm()).item()
    err_ours = ((_last_hidden(ours, sentences) - ref).norm() / ref.norm()).item()
    assert err_theirs < 0.1 and err_ours < 0.1, (err_theirs, err_ours)
    assert err_ours < 1.5 * err_theirs + 0.01, (err_ours, err_theirs)

    # Same idea, different integer grid: torchao's symmetric int8 uses [-128, 127] with
    # scale = absmax / 127.5; ours [-127, 127] with absmax / 127. Weights agree within a step.
    linear = model.bert.encoder.layer[0].attention.self.query
    w_theirs = theirs.bert.encoder.layer[0].attention.self.query.weight
    scale_theirs = w_theirs.scale.reshape(-1)
    assert torch.allclose(scale_theirs, linear.weight.abs().amax(1) / 127.5, rtol=1e-5)
    w_ours = ours.bert.encoder.layer[0].attention.self.query.dequantized_weight()
    assert ((w_theirs.dequantize() - w_ours).abs() <= scale_theirs[:, None] * 1.01).all()


# ---------------------------------------------------------------- CUDA kernels
@pytest.mark.gpu
def test_nf4_codes_equal_bitsandbytes_cuda_kernel(real_weights):  # CUDA path
    w = real_weights["layer0.intermediate.dense"].cuda()
    packed, state = bnb_functional.quantize_4bit(w, blocksize=64, quant_type="nf4")
    ours = Q.quantize_nf4(w, 64)
    assert torch.equal(ours.absmax, state.absmax)
    same = (ours.codes == packed.reshape(-1)).float().mean().item()
    # The CUDA kernel computes w / absmax in its own order; a value on a midpoint may flip.
    assert same > 0.9999, same
    close = (Q.dequantize_nf4(ours) - bnb_functional.dequantize_4bit(packed, state)).abs() < 1e-6
    assert close.float().mean().item() > 0.9999


@pytest.mark.gpu
def test_quant_linear_runs_on_cuda(encoder):  # CUDA path
    model, _ = encoder
    linear = copy.deepcopy(model.bert.encoder.layer[0].intermediate.dense).cuda()
    x = torch.randn(4, 384, device="cuda")
    for method in ("nf4", "int8"):
        layer = Q.QuantLinear.from_linear(linear, method).cuda()
        assert layer.qweight.codes.is_cuda
        with torch.no_grad():
            rel = ((layer(x) - linear(x)).norm() / linear(x).norm()).item()
        assert rel < 0.12, (method, rel)
