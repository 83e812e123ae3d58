"""Numeric precision of inference: fp32 (the default, checked against the original), or an
opt-in faster mode.

* ``fp32``: the model as it is; the parity tests hold on this path.
* ``bf16``: matrix products and convolutions in bfloat16 under ``torch.autocast`` (CPU or CUDA);
  the weights stay fp32 and the model is not modified. Fast where the hardware multiplies
  bfloat16 natively (CPUs with AMX or AVX-512 BF16, GPUs since Ampere); elsewhere slower than
  fp32.
* ``fp16``: the same with float16, CUDA only.
* ``int8``: static int8 across the visual path (`rvos.modeling.quantize`): the backbone's and
  the FPN's convolutions and the large linear layers (the input projections stay fp32), with
  activation ranges calibrated once per model on a few real frames and stored with it; CPU
  only. In place: `with_precision` quantises a copy. Where this torch build lacks oneDNN's int8
  kernels it falls back to ``int8-dynamic``.
* ``int8-dynamic`` (internal: the benchmarks compare with it; the doors do not offer it): the
  earlier int8, the large linear layers of the encoder and the cross-modal FPN dynamically
  quantised (activations quantised on the fly), convolutions fp32.

None of the faster modes is the default: their deviation from fp32 is measured
(`benchmarks/bench_precision.py`) but cannot be validated here on the released weights.

The doors (the app, ``rvos predict``, `rvos.predictor.Predictor`) offer on a CPU only the modes
faster than fp32 there (`rvos.modeling.cpu_features`) and resolve ``"auto"`` to the fastest
(`choose_precision`); `check_precision`, `prepare_model` and `with_precision` run any mode the
device can run at all, so that the benchmarks can measure a slow one.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn
from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

from rvos.errors import RvosError
from rvos.modeling.cpu_features import CpuFeatures, cpu_features
from rvos.modeling.quantize import quantize_static, static_int8_available

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Modes `prepare_model` / `with_precision` run for the benchmarks, never offered by the doors.
INTERNAL_PRECISIONS = ("int8-dynamic",)
INT8_MODES = ("int8", "int8-dynamic")
AUTO = "auto"  # a request, not a precision: the fastest mode this device runs natively
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# int8-dynamic quantises the linear layers of these parts, where the time goes (their FFNs and the
# deformable attention's value and output projections), except the layers that predict where
# deformable attention samples and with which weights: an int8 pixel offset is off by pixels.
# The text encoder runs once per expression, the decoder on 5 queries and the heads are tiny:
# quantising them would cost accuracy and gain nothing.
_INT8_PARTS = ("transformer.encoder", "pixel_decoder")
_INT8_KEEP = ("sampling_offsets", "attention_weights")


class PrecisionError(RvosError, ValueError):
    """A precision this device cannot run, or an unknown one."""


def check_precision(precision: str, device: str | torch.device) -> str:
    """``precision`` if ``device`` can run it; else a `PrecisionError` that says what can."""
    device_type = torch.device(device).type
    if precision not in PRECISIONS + INTERNAL_PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; choose one of "
                             f"{', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type != "cuda":
        raise PrecisionError("fp16 needs a CUDA GPU; on this CPU use "
                             + " or ".join(offered_precisions("cpu")))
    if precision in INT8_MODES and device_type != "cpu":
        raise PrecisionError("int8 runs on the CPU only; on a GPU use bf16 or fp16")
    return precision


def offered_precisions(device: str | torch.device,
                       features: CpuFeatures | None = None) -> tuple[str, ...]:
    """The precisions the doors offer on ``device``, fastest first, fp32 last: on a CPU those
    faster than fp32 there (``features``: this CPU's, `cpu_features`, when None); on a GPU bf16
    and fp16; elsewhere fp32 only."""
    device_type = torch.device(device).type
    if device_type == "cuda":
        return ("bf16", "fp16", "fp32") if _cuda_fastest(device) == "bf16" else (
            "fp16", "bf16", "fp32")
    if device_type == "cpu":
        return (*(features or cpu_features()).fast_precisions, "fp32")
    return ("fp32",)


def choose_precision(precision: str, device: str | torch.device,
                     features: CpuFeatures | None = None) -> str:
    """The precision a door runs for the request ``precision`` (a `PRECISIONS` name or
    ``"auto"``) on ``device``: ``"auto"`` becomes the fastest offered one; a mode the device
    cannot run, or one slower than fp32 on this CPU, raises a `PrecisionError` that says why and
    what is faster."""
    if precision == AUTO:
        return offered_precisions(device, features)[0]
    if precision not in PRECISIONS:  # the internal modes are the benchmarks' only
        raise PrecisionError(f"unknown precision {precision!r}; choose one of "
                             f"{', '.join(PRECISIONS)} or {AUTO}")
    check_precision(precision, device)
    if torch.device(device).type != "cpu" or precision == "fp32":
        return precision
    features = features or cpu_features()
    if precision in features.fast_precisions:
        return precision
    faster = [p for p in features.fast_precisions if p != precision]
    instead = "use fp32" + "".join(f", or {p} (faster here)" for p in faster)
    raise PrecisionError(f"{precision} is slower than fp32 on this CPU "
                         f"({features.why_slow(precision)}): {instead}")


def _cuda_fastest(device: str | torch.device) -> str:
    """bf16 on GPUs that multiply it natively (compute capability 8+, Ampere on), else fp16."""
    major = torch.cuda.get_device_capability(device)[0] if torch.cuda.is_available() else 0
    return "bf16" if major >= 8 else "fp16"


def prepare_model(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """Set ``model`` (a `rvos.modeling.ReferFormer`) to run in ``precision``; returns it.

    fp32, bf16 and fp16 only record the choice (`ReferFormer.forward` then runs under autocast)
    and can be changed back; the int8 modes replace layers in place and cannot. ``int8`` reads
    the model's stored calibration or calibrates it (`rvos.modeling.quantize.quantize_static`;
    ``model.int8_calibration`` then says which); where this torch build lacks oneDNN's int8
    kernels it runs ``int8-dynamic`` instead (``model.precision`` says so).
    """
    device = next(model.parameters()).device
    check_precision(precision, device)
    current = getattr(model, "precision", "fp32")
    if current in INT8_MODES and precision != current:
        raise PrecisionError(f"this model was quantised to {current} in place; load it again "
                             f"for {precision}")
    if precision == current:
        return model
    if precision == "int8" and not static_int8_available():
        precision = "int8-dynamic"
    if precision == "int8":
        model.int8_calibration = quantize_static(model)
    elif precision == "int8-dynamic":
        _quantize_dynamic(model)
    model.precision = precision
    return model


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """``model`` in ``precision``, leaving ``model`` itself as it is: the model when it is
    already in that precision, else a shallow copy sharing its weights (fp32 / bf16 / fp16), or
    a quantised deep copy (int8)."""
    device = next(model.parameters()).device
    check_precision(precision, device)
    current = getattr(model, "precision", "fp32")
    if current == precision:
        return model
    if current in INT8_MODES:
        raise PrecisionError(f"this model was quantised to {current}; load it again for "
                             f"{precision}")
    derived = copy.deepcopy(model) if precision in INT8_MODES else copy.copy(model)
    return prepare_model(derived, precision)


def autocast(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32 and the int8
    modes)."""
    dtype = _AUTOCAST.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def full_precision(device: str | torch.device) -> Iterator[None]:
    """Turn autocast off inside: for small, accuracy-critical parts (heads, mask logits)."""
    with torch.autocast(torch.device(device).type, enabled=False):
        yield


def _quantize_dynamic(model: nn.Module) -> None:
    names = {name: default_dynamic_qconfig for name, module in model.named_modules()
             if type(module) is nn.Linear and name.startswith(_INT8_PARTS)
             and not name.endswith(_INT8_KEEP)}
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which rvos does not depend
        # on; it is complete in the pinned torch 2.13.
        warnings.simplefilter("ignore")
        quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)
