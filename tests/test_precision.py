"""The opt-in faster precisions (`rvos.modeling.precision`): what they change and what they leave
alone.

How far they move real answers is measured by benchmarks/bench_precision.py (parity clip, built-in
test split); these tests pin the mechanics on tiny models: the fp32 path is untouched, a faster
mode is a derived model, its outputs stay close to fp32's, and impossible requests say why.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rvos.errors import PredictorError
from rvos.modeling.precision import PrecisionError, check_precision, prepare_model, with_precision
from rvos.predictor.predictor import Predictor

SHORT = "the red ball on the left"


def _clip(t: int = 3, h: int = 45, w: int = 61) -> torch.Tensor:
    return torch.randn(t, 3, h, w, generator=torch.Generator().manual_seed(0))


def _linears(model: nn.Module) -> int:
    return sum(type(m) is nn.Linear for m in model.modules())


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_faster_precision_is_a_derived_model_that_stays_close(make_tiny_model, precision):
    model = make_tiny_model()
    linears = _linears(model)
    fast = with_precision(model, precision)
    assert fast is not model and fast.precision == precision
    assert model.precision == "fp32" and _linears(model) == linears  # the original untouched
    if precision == "int8":
        assert _linears(fast) < linears  # the visual path's linear layers are quantised
    with torch.no_grad():
        want, got = model(_clip(), [SHORT]), fast(_clip(), [SHORT])
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        assert got[key].dtype == torch.float32, key  # heads and masks in full precision
        err = (got[key] - want[key]).abs().max().item()
        assert err <= 0.1 * want[key].abs().max().item(), f"{precision} {key}: {err:.3g}"
        assert err > 0, f"{precision} {key}: identical, so the mode did not run"


def test_fp32_is_the_model_itself_and_int8_is_one_way(make_tiny_model):
    model = make_tiny_model()
    assert with_precision(model, "fp32") is model
    quantised = prepare_model(make_tiny_model(), "int8")
    with pytest.raises(PrecisionError, match="load it again"):
        with_precision(quantised, "bf16")


@pytest.mark.parametrize(("precision", "device", "match"), [
    ("fp16", "cpu", "CUDA GPU"), ("int8", "cuda", "CPU only"), ("fp64", "cpu", "unknown")])
def test_impossible_precisions_say_what_works(precision, device, match):
    with pytest.raises(PrecisionError, match=match):
        check_precision(precision, device)


def test_the_predictor_runs_a_precision_and_records_it(make_tiny_model):
    model = make_tiny_model()
    frames = (torch.rand(4, 40, 56, 3) * 255).to(torch.uint8).numpy()
    plain = Predictor(model, short_side=32).predict(frames, SHORT)
    fast = Predictor(model, short_side=32, precision="bf16").predict(frames, SHORT)
    assert model.precision == "fp32"
    assert plain.settings["precision"] == "fp32" and fast.settings["precision"] == "bf16"
    agree = sum((plain[0].mask(t) == fast[0].mask(t)).mean() for t in range(4)) / 4
    assert agree > 0.9
    with pytest.raises(PredictorError, match="CUDA GPU"):
        Predictor(model, precision="fp16")
