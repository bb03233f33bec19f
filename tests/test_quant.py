"""effkit.quant from scratch: the arithmetic, the packing, the bytes, the layers, the errors.

Library comparisons (bitsandbytes, torchao) are in tests/test_quant_libs.py.
"""
import math

import pytest
import torch
from torch import nn

import effkit as ek
from effkit import quant as Q


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def linear_weights(encoder):
    model, _ = encoder
    return {n: m.weight.detach().clone() for n, m in model.named_modules()
            if isinstance(m, nn.Linear)}


@pytest.fixture(scope="module")
def sentiment_texts():
    return ek.data.load_sentiment().dev.take(32, seed=0).texts


def _row_scale(q, shape):
    """Each element's scale, in the original shape (to bound its rounding error)."""
    per_row = q.scale.numel()
    return q.scale.repeat_interleave(math.prod(shape) // per_row).reshape(shape)


# ---------------------------------------------------------------- integer range and packing
@pytest.mark.parametrize("bits", range(2, 9))
def test_integer_range(bits):
    assert Q.integer_range(bits, "symmetric") == (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    assert Q.integer_range(bits, "asymmetric") == (0, 2 ** bits - 1)
    assert Q.integer_range(8, "symmetric") == (-127, 127)


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_bits_round_trip_and_is_dense(bits):
    values = torch.randint(0, 2 ** bits, (1001,), generator=torch.Generator().manual_seed(bits))
    packed = Q.pack_bits(values, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == math.ceil(1001 * bits / 8)
    assert torch.equal(Q.unpack_bits(packed, bits, 1001), values.to(torch.int32))


def test_pack_4bit_puts_first_code_in_high_nibble():
    packed = Q.pack_bits(torch.tensor([1, 2, 15, 0]), 4)
    assert packed.tolist() == [0x12, 0xF0]
    assert Q.pack_bits(torch.tensor([3, 0, 1, 2]), 2).tolist() == [0b11000110]


def test_pack_bits_rejects_values_out_of_range():
    with pytest.raises(ValueError, match=r"values in \[0, 7\] for 3 bits"):
        Q.pack_bits(torch.tensor([0, 8]), 3)


# ---------------------------------------------------------------- quantize / dequantize
CASES = [(g, gs) for g, gs in (("tensor", None), ("channel", None), ("group", 32))]


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("scheme", Q.SCHEMES)
@pytest.mark.parametrize("granularity, group_size", CASES)
def test_round_trip_error_is_at_most_half_a_step(bits, scheme, granularity, group_size):
    w = torch.randn(48, 96, generator=torch.Generator().manual_seed(0))
    q = Q.quantize(w, bits, scheme, granularity, group_size)
    w_hat = Q.dequantize(q)
    assert w_hat.shape == w.shape and w_hat.dtype == w.dtype
    assert ((w_hat - w).abs() <= _row_scale(q, w.shape) / 2 + 1e-6).all()
    qmin, qmax = Q.integer_range(bits, scheme)
    codes = q.int_codes()
    assert codes.min() >= qmin and codes.max() <= qmax


def test_symmetric_maps_absmax_to_the_largest_code():
    w = torch.tensor([[0.5, -2.0, 1.0], [0.1, 0.2, -0.05]])
    q = Q.quantize(w, 8, "symmetric", "channel")
    assert torch.allclose(q.scale, torch.tensor([2.0, 0.2]) / 127)
    assert q.int_codes()[0, 1] == -127 and q.int_codes()[1, 1] == 127
    assert q.zero_point is None


def test_asymmetric_uses_the_full_range_and_keeps_zero_exact():
    w = torch.tensor([[0.0, 0.3, 1.2, 2.55]])            # one-sided, like a ReLU output
    q = Q.quantize(w, 8, "asymmetric", "tensor")
    codes = q.int_codes()
    assert codes.min() == 0 and codes.max() == 255
    assert Q.dequantize(q)[0, 0] == 0.0
    w2 = torch.tensor([[-1.0, -0.2, 0.0, 3.0]])
    q2 = Q.quantize(w2, 4, "asymmetric", "tensor")
    assert int(q2.zero_point) == round(1.0 / float(q2.scale))    # zero = -lo / scale
    assert Q.dequantize(q2)[0, 2] == 0.0


def test_codes_are_packed_in_the_promised_dtypes():
    w = torch.randn(64, 128)
    q8s = Q.quantize(w, 8, "symmetric", "channel")
    q8a = Q.quantize(w, 8, "asymmetric", "channel")
    q4 = Q.quantize(w, 4, "symmetric", "group", 64)
    q2 = Q.quantize(w, 2, "asymmetric", "tensor")
    q3 = Q.quantize(w, 3, "symmetric", "tensor")
    assert q8s.codes.dtype == torch.int8 and q8s.codes.numel() == w.numel()
    assert q8a.codes.dtype == torch.uint8 and q8a.zero_point.dtype == torch.uint8
    assert q4.codes.dtype == torch.uint8 and q4.codes.numel() == w.numel() // 2
    assert q2.codes.numel() == w.numel() // 4
    assert q3.codes.numel() == math.ceil(w.numel() * 3 / 8)
    for q in (q8s, q8a, q4, q2, q3):
        expected = sum(t.numel() * t.element_size() for t in (q.codes, q.scale, q.zero_point)
                       if t is not None)
        assert q.stored_bytes() == expected


def test_finer_granularity_lowers_error_on_real_weights(linear_weights):
    w = linear_weights["bert.encoder.layer.0.attention.self.query"]
    errors = {g: (Q.fake_quantize(w, 4, "symmetric", g, gs) - w).pow(2).mean().item()
              for g, gs in CASES}
    assert errors["group"] < errors["channel"] < errors["tensor"], errors
    more_bits = [(Q.fake_quantize(w, b, "symmetric", "channel") - w).pow(2).mean().item()
                 for b in range(2, 9)]
    assert all(a > b for a, b in zip(more_bits, more_bits[1:])), more_bits


def test_bf16_and_fp16_round_trip_keeps_dtype():
    w = torch.randn(8, 16).to(torch.bfloat16)
    assert Q.dequantize(Q.quantize(w, 8, "symmetric", "channel")).dtype == torch.bfloat16
    assert Q.dequantize_nf4(Q.quantize_nf4(w.half(), 16)).dtype == torch.float16


def test_all_zero_rows_quantize_to_zero():
    w = torch.zeros(2, 8)
    w[1] = torch.linspace(-1, 1, 8)
    for scheme in Q.SCHEMES:
        w_hat = Q.fake_quantize(w, 4, scheme, "channel")
        assert torch.equal(w_hat[0], torch.zeros(8)) and torch.isfinite(w_hat).all()


# ---------------------------------------------------------------- stored bytes on the real model
def _analytic_floor(numel, bits, n_scales, scale_bytes=4):
    return Q.analytic_bytes(numel, bits, n_scales, scale_bytes)


def test_int8_per_channel_bytes_on_minilm(linear_weights):
    fp32 = stored = floor = 0
    for w in linear_weights.values():
        q = Q.quantize(w, 8, "symmetric", "channel")
        fp32 += w.numel() * 4
        stored += q.stored_bytes()
        floor += _analytic_floor(w.numel(), 8, w.shape[0])
    assert stored / fp32 <= 0.26, stored / fp32
    assert stored <= 1.01 * floor, (stored, floor)


def test_nf4_bytes_on_minilm(linear_weights):
    fp32 = stored = floor = 0
    for w in linear_weights.values():
        if w.numel() % 64:
            continue                       # the 2-class head (768 values) is 12 blocks: fine
        t = Q.quantize_nf4(w, 64)
        fp32 += w.numel() * 4
        stored += t.stored_bytes()
        floor += _analytic_floor(w.numel(), 4, w.numel() // 64)
    assert stored / fp32 <= 0.145, stored / fp32
    assert stored <= 1.01 * floor, (stored, floor)


def test_low_bit_bytes_match_the_floor_on_minilm(linear_weights):
    w = linear_weights["bert.encoder.layer.2.intermediate.dense"]
    for bits in (2, 3, 5):
        q = Q.quantize(w, bits, "symmetric", "group", 128)
        floor = _analytic_floor(w.numel(), bits, w.numel() // 128)
        assert floor <= q.stored_bytes() <= 1.01 * floor + 1


# ---------------------------------------------------------------- NF4
def test_nf4_levels_shape():
    levels = Q.nf4_levels()
    assert levels.shape == (16,) and levels.dtype == torch.float32
    assert torch.all(levels[1:] > levels[:-1])
    assert levels[0] == -1.0 and levels[-1] == 1.0 and (levels == 0).sum() == 1
    assert (levels > 0).sum() == 8 and (levels < 0).sum() == 7


def test_nf4_round_trip_error_bound(linear_weights):
    w = linear_weights["bert.encoder.layer.1.attention.output.dense"]
    t = Q.quantize_nf4(w, 64)
    assert t.codes.dtype == torch.uint8 and t.codes.numel() == w.numel() // 2
    levels = Q.nf4_levels()
    half_gap = ((levels[1:] - levels[:-1]).max() / 2).item()
    err = (Q.dequantize_nf4(t) - w).abs().reshape(-1, 64)
    assert (err <= half_gap * t.absmax[:, None] + 1e-6).all()
    assert torch.equal(t.absmax, w.abs().reshape(-1, 64).amax(1))


def test_double_quant_saves_bits_per_parameter(linear_weights):
    w = linear_weights["bert.encoder.layer.3.intermediate.dense"]       # 1536 x 384
    plain, double = Q.quantize_nf4(w, 64), Q.quantize_nf4(w, 64, double_quant=True)
    assert plain.constant_bits_per_parameter() == pytest.approx(0.5)
    assert 0.12 < double.constant_bits_per_parameter() < 0.135
    assert double.bits_per_parameter() < plain.bits_per_parameter() - 0.35
    rel = (double.block_absmax() - plain.absmax).abs() / plain.absmax
    assert rel.max() < 0.02, rel.max()
    assert (double.dequantize() - plain.dequantize()).abs().max() < 0.02 * w.abs().max()


# ---------------------------------------------------------------- LLM.int8()
def _with_outliers(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(12, 96, generator=g), torch.randn(40, 96, generator=g) / 10
    x[:, [5, 70]] *= 25                    # two feature columns with huge activations
    return x, w


def test_outlier_columns_are_found():
    x, _ = _with_outliers()
    cols = Q.outlier_columns(x, 6.0)
    assert cols.nonzero().flatten().tolist() == [5, 70]
    assert not Q.outlier_columns(x, None).any()


def test_int8_matmul_splits_outliers_and_beats_plain_int8():
    x, w = _with_outliers()
    exact = x @ w.T
    # Against the product with the int8 weight, the error left is the activations' rounding,
    # which is what the outlier split is for: huge columns no longer stretch every token's scale.
    w_int8 = Q.dequantize(Q.int8_vectorwise(w))
    split = Q.int8_matmul_with_outliers(x, w, 6.0)
    plain = Q.int8_matmul_with_outliers(x, w, None)
    err_split = ((split - x @ w_int8.T).norm() / exact.norm()).item()
    err_plain = ((plain - x @ w_int8.T).norm() / exact.norm()).item()
    assert err_split < err_plain / 10, (err_split, err_plain)
    assert ((split - exact).norm() / exact.norm()).item() < 0.01


def test_int8_matmul_is_integer_product_times_scales():
    x, w = _with_outliers(1)
    xq, wq = Q.int8_vectorwise(x), Q.int8_vectorwise(w)
    expected = (xq.int_codes().double() @ wq.int_codes().double().T) * xq.scale.double()[:, None] \
        * wq.scale.double()[None, :]
    got = Q.int8_matmul_with_outliers(x, w, None)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_int8_matmul_keeps_leading_dims_and_bias():
    x, w = _with_outliers()
    bias = torch.randn(40)
    y = Q.int8_matmul_with_outliers(x.reshape(3, 4, 96), w, 6.0, bias)
    assert y.shape == (3, 4, 40)
    assert torch.allclose(y.reshape(12, 40), Q.int8_matmul_with_outliers(x, w, 6.0) + bias, atol=1e-5)


def test_minilm_has_outlier_features_on_real_sentences(encoder, sentiment_texts):
    model, tokenizer = encoder
    rows = Q.count_outlier_columns(model, tokenizer, sentiment_texts, threshold=6.0)
    names = [r["name"] for r in rows]
    assert len(rows) == sum(isinstance(m, nn.Linear) for m in model.modules())
    assert names[0] == "bert.encoder.layer.0.attention.self.query"
    for r in rows:
        assert 0 <= r["outlier_columns"] <= r["in_features"]
        assert (r["outlier_columns"] > 0) == (r["max_abs"] >= 6.0)
    # The FFN input (after LayerNorm) carries a handful of huge features in every layer: the
    # LLM.int8() observation, here in a 22M-parameter encoder.
    ffn = [r for r in rows if r["name"].endswith("intermediate.dense")]
    assert all(0 < r["outlier_columns"] <= 0.05 * r["in_features"] for r in ffn), ffn


# ---------------------------------------------------------------- QuantLinear / quantize_model
@pytest.mark.parametrize("method, bits, options, tol", [
    ("affine", 8, {}, 0.01),
    ("affine", 4, {"granularity": "group", "group_size": 64}, 0.12),
    ("nf4", None, {}, 0.12),
    ("nf4", None, {"double_quant": True}, 0.12),
    ("int8", None, {}, 0.02),
])
def test_quant_linear_matches_float_linear(encoder, method, bits, options, tol):
    model, _ = encoder
    linear = model.bert.encoder.layer[0].intermediate.dense
    layer = Q.QuantLinear.from_linear(linear, method, bits, **options)
    x = torch.randn(2, 7, linear.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = linear(x), layer(x)
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < tol, rel
    assert layer.stored_bytes() < 0.3 * linear.weight.numel() * 4
    state = layer.state_dict()
    assert "qweight_codes" in state and all(k.startswith(("qweight_", "bias")) for k in state)


def test_quantize_model_int8_and_nf4_on_real_model(encoder, sentiment_texts):
    import copy

    model, tokenizer = encoder
    batch = tokenizer(sentiment_texts[:8], padding=True, truncation=True, max_length=32,
                      return_tensors="pt")
    real = batch["attention_mask"].bool()          # compare real tokens, not padding

    def last_hidden(m):
        with torch.no_grad():
            return m(**batch, output_hidden_states=True).hidden_states[-1][real]

    ref = last_hidden(model)
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    errors = {}
    for method, options in (("int8", {}), ("int8", {"threshold": None}), ("nf4", {})):
        qmodel = copy.deepcopy(model)
        report = Q.quantize_model(qmodel, method, **options)
        assert len(report.replaced) == n_linear - 1 and report.skipped == ["classifier"]
        assert isinstance(qmodel.classifier, nn.Linear)
        assert isinstance(qmodel.bert.encoder.layer[5].output.dense, Q.QuantLinear)
        assert report.ratio < (0.26 if method == "int8" else 0.15)
        assert ek.measure.tensor_bytes(qmodel) < ek.measure.tensor_bytes(model)
        assert method in report.summary()
        key = method if options.get("threshold", 6.0) else "int8 without outlier split"
        errors[key] = ((last_hidden(qmodel) - ref).norm() / ref.norm()).item()
    assert errors["int8"] < 0.07 and errors["nf4"] < 0.35, errors
    # The outlier split of LLM.int8() pays off on the real model.
    assert errors["int8"] < errors["int8 without outlier split"], errors


def test_quantize_model_targets_and_skip(encoder):
    import copy

    model, _ = encoder
    qmodel = copy.deepcopy(model)
    report = Q.quantize_model(qmodel, "affine", 4, targets=("attention",), granularity="group",
                              group_size=32)
    assert len(report.replaced) == 6 * 4
    assert all(".attention." in r["name"] for r in report.replaced)
    assert isinstance(qmodel.bert.encoder.layer[0].intermediate.dense, nn.Linear)
    report = Q.quantize_model(copy.deepcopy(model), "nf4", skip=("classifier", "layer.0.attention.self"))
    assert report.skipped == [f"bert.encoder.layer.0.attention.self.{n}" for n in ("query", "key", "value")] \
        + ["classifier"]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bits, error, words", [
    (1, ValueError, r"bits must be an integer in \[2, 8\], got 1"),
    (9, ValueError, r"bits must be an integer in \[2, 8\], got 9"),
    (16, ValueError, r"in \[2, 8\], got 16"),
    (4.0, TypeError, r"bits must be an integer .* got 4.0 \(float\)"),
    ("4", TypeError, r"got '4' \(str\)"),
    (True, TypeError, r"got True \(bool\)"),
])
def test_bad_bits(bits, error, words):
    with pytest.raises(error, match=words):
        Q.quantize(torch.randn(4, 8), bits)


def test_group_size_must_divide_the_row():
    with pytest.raises(ValueError, match=r"group_size=100 does not divide the row length 384"):
        Q.quantize(torch.randn(16, 384), 4, granularity="group", group_size=100)
    with pytest.raises(ValueError, match=r"needs group_size, a positive int, got None"):
        Q.quantize(torch.randn(16, 384), 4, granularity="group")
    with pytest.raises(ValueError, match=r"group_size is only used with granularity='group'"):
        Q.quantize(torch.randn(16, 384), 4, granularity="channel", group_size=32)


@pytest.mark.parametrize("fn", [lambda w: Q.quantize(w, 8), lambda w: Q.quantize_nf4(w, 4),
                                lambda w: Q.int8_matmul_with_outliers(w, torch.randn(3, 8))])
def test_non_floating_tensors_are_refused(fn):
    with pytest.raises(TypeError, match=r"must be a floating-point tensor .* got dtype torch.int64"):
        fn(torch.arange(16).reshape(2, 8))


def test_other_bad_arguments():
    w = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"scheme must be one of \('symmetric', 'asymmetric'\)"):
        Q.quantize(w, 8, scheme="affine")
    with pytest.raises(ValueError, match=r"granularity must be one of"):
        Q.quantize(w, 8, granularity="row")
    with pytest.raises(ValueError, match=r"granularity='channel' needs .* got shape \(8,\)"):
        Q.quantize(torch.randn(8), 8, granularity="channel")
    with pytest.raises(TypeError, match=r"must be a torch.Tensor, got list"):
        Q.quantize([1.0, 2.0], 8)
    with pytest.raises(TypeError, match=r"dequantize takes a QuantizedTensor"):
        Q.dequantize(w)
    with pytest.raises(ValueError, match=r"x has 5 features but the weight expects 8"):
        Q.int8_matmul_with_outliers(torch.randn(2, 5), w)
    with pytest.raises(ValueError, match=r"threshold must be a positive magnitude"):
        Q.int8_matmul_with_outliers(torch.randn(2, 8), w, threshold=-1.0)


def test_nf4_needs_whole_blocks():
    with pytest.raises(ValueError, match=r"multiple of blocksize=64: shape \(10, 10\) has 100 values"):
        Q.quantize_nf4(torch.randn(10, 10), 64)
    with pytest.raises(ValueError, match=r"blocksize must be an even positive int"):
        Q.quantize_nf4(torch.randn(64), 0)


def test_unsupported_modules_are_named(encoder):
    import copy

    with pytest.raises(TypeError, match=r"QuantLinear replaces nn.Linear only; got Embedding"):
        Q.QuantLinear.from_linear(nn.Embedding(10, 4), "nf4")
    model = copy.deepcopy(encoder[0])
    with pytest.raises(TypeError, match=r"word_embeddings is of type Embedding; .* supports nn.Linear only"):
        Q.quantize_model(model, "int8", targets=("word_embeddings",))
    with pytest.raises(ValueError, match=r"method must be one of \('affine', 'nf4', 'int8'\)"):
        Q.quantize_model(model, "fp4")
    with pytest.raises(ValueError, match=r"method='affine' needs bits"):
        Q.quantize_model(model, "affine")
    with pytest.raises(ValueError, match=r"method='nf4' is 4-bit by definition, got bits=8"):
        Q.quantize_model(model, "nf4", 8)
    with pytest.raises(ValueError, match=r"target 'nope' matches no module of BertForSequenceClassification"):
        Q.quantize_model(model, "int8", targets=("nope",))
