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

from rvos.app.inputs import FASTEST_LABEL, AppInputError, Limits, RunSettings, precision_choices
from rvos.errors import PredictorError
from rvos.modeling.cpu_features import ENV_FLAGS, cpu_features, parse_cpuinfo
from rvos.modeling.precision import (
    PrecisionError,
    check_precision,
    choose_precision,
    offered_precisions,
    prepare_model,
    with_precision,
)
from rvos.predictor.predictor import Predictor

SHORT = "the red ball on the left"

# Flags as /proc/cpuinfo spells them, trimmed: a laptop-class AVX2 CPU (the EPYC), a
# Sapphire Rapids Xeon (AMX), an AVX-512 CPU with BF16 but no AMX (Zen 4), an old x86 without
# AVX2, and two ARM cores (Neoverse N1: dot product; Neoverse V1: also BF16).
AVX2 = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2"
AMX = AVX2 + (" avx512f avx512bw avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile "
              "amx_int8")
ZEN4 = AVX2 + " avx512f avx512bw avx512_vnni avx512_bf16"
OLD_X86 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx"
N1 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc " \
     "dcpop asimddp ssbs"
V1 = N1 + " sve i8mm bf16 sveasimdfhm"
X86_CPUINFO = f"""processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: {AVX2}
bugs\t\t: sysret_ss_attrs

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: {AVX2}
"""
ARM_CPUINFO = f"""processor\t: 0
BogoMIPS\t: 243.75
Features\t: {V1}
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1
"""


def _cpu(flags: str, **env: str):
    return cpu_features(env={ENV_FLAGS: flags, **env})


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


def test_the_predictor_runs_a_precision_and_records_it(make_tiny_model, monkeypatch):
    monkeypatch.setenv(ENV_FLAGS, AMX)  # bf16 is offered where the CPU multiplies it natively
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


# ------------------------------------------------------------- modes the hardware does well


def test_the_detector_reads_x86_and_arm_cpuinfo():
    model, flags, arch = parse_cpuinfo(X86_CPUINFO)
    assert (model, arch) == ("AMD EPYC 7B13", "x86")
    assert {"avx2", "fma"} <= flags and "avx512_bf16" not in flags and "bugs" not in flags
    avx2 = cpu_features(X86_CPUINFO, env={})
    assert (avx2.bf16_unit, avx2.int8_unit, avx2.fast_precisions) == (None, "AVX2", ("int8",))
    assert avx2.source == "/proc/cpuinfo" and "AMD EPYC 7B13" in avx2.header()

    model, flags, arch = parse_cpuinfo(ARM_CPUINFO)
    assert (model, arch) == ("ARM CPU part 0xd40", "arm")
    assert {"asimddp", "bf16", "i8mm"} <= flags
    v1 = cpu_features(ARM_CPUINFO, env={})
    assert (v1.bf16_unit, v1.int8_unit) == ("ARM BF16", "ARM dot product")
    n1 = cpu_features(ARM_CPUINFO.replace(" bf16", ""), env={})
    assert n1.fast_precisions == ("int8",)
    assert "no BF16 extension" in n1.why_slow("bf16")


@pytest.mark.parametrize(("flags", "fast"), [
    (AVX2, ("int8",)), (AMX, ("bf16", "int8")), (ZEN4, ("int8", "bf16")), (OLD_X86, ()),
    (N1, ("int8",)), (V1, ("int8", "bf16"))])
def test_each_cpu_is_offered_what_it_runs_faster_than_fp32(flags, fast):
    cpu = _cpu(flags)
    assert cpu.fast_precisions == fast
    assert offered_precisions("cpu", cpu) == (*fast, "fp32")
    assert choose_precision("auto", "cpu", cpu) == (*fast, "fp32")[0]  # the fastest native mode


def test_an_isa_cap_turns_the_bfloat16_units_off():
    assert _cpu(AMX).bf16_unit == "AMX"
    assert _cpu(AMX, ONEDNN_MAX_CPU_ISA="AVX512_CORE_BF16").bf16_unit == "AVX-512 BF16"
    capped = _cpu(AMX, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    assert capped.fast_precisions == ("int8",)
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in capped.header()
    with pytest.raises(PrecisionError, match="ATEN_CPU_CAPABILITY=avx2"):
        choose_precision("bf16", "cpu", capped)
    with pytest.raises(PrecisionError, match="ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off"):
        choose_precision("bf16", "cpu", _cpu(AMX, ONEDNN_MAX_CPU_ISA="avx2"))


def test_a_slower_mode_is_refused_saying_why_and_what_is_faster():
    with pytest.raises(PrecisionError) as err:
        choose_precision("bf16", "cpu", _cpu(AVX2))
    assert str(err.value) == ("bf16 is slower than fp32 on this CPU (no AMX or AVX-512 BF16): "
                              "use fp32, or int8 (faster here)")
    with pytest.raises(PrecisionError, match=r"int8 is slower .* \(no AVX2 or VNNI\): use fp32$"):
        choose_precision("int8", "cpu", _cpu(OLD_X86))
    assert choose_precision("bf16", "cpu", _cpu(AMX)) == "bf16"
    assert choose_precision("fp32", "cpu", _cpu(OLD_X86)) == "fp32"  # always there, exact


def test_on_a_cpu_without_bfloat16_hardware_the_app_does_not_offer_bf16(monkeypatch):
    avx2 = precision_choices(["cpu"], _cpu(AVX2))
    assert [value for _, value in avx2] == ["fp32", "int8", "auto"]
    assert avx2[0] == ("fp32 (exact, default)", "fp32")
    assert avx2[-1] == (FASTEST_LABEL, "auto") and "AVX2" in avx2[1][0]
    amx = precision_choices(["cpu"], _cpu(AMX))
    assert [value for _, value in amx] == ["fp32", "bf16", "int8", "auto"]
    assert "AMX" in {v: k for k, v in amx}["bf16"]
    # With a GPU as well, bf16 and fp16 are offered for it (today's behaviour), still not bf16
    # for this CPU: the label says where each mode is faster.
    both = {value: label for label, value in precision_choices(["cuda", "cpu"], _cpu(AVX2))}
    assert list(both) == ["fp32", "bf16", "fp16", "int8", "auto"]
    assert both["bf16"] == "bf16 (faster on GPU)" and both["int8"] == "int8 (faster on CPU: AVX2)"
    with pytest.raises(PrecisionError, match="bf16 is slower than fp32 on this CPU"):
        choose_precision("bf16", "cpu", _cpu(AVX2))
    assert choose_precision("bf16", "cuda", _cpu(AVX2)) == "bf16"
    # A visitor who sends bf16 anyway (the API) is told why, in one line.
    monkeypatch.setenv(ENV_FLAGS, AVX2)
    with pytest.raises(AppInputError, match="bf16 is slower than fp32 on this CPU"):
        RunSettings(precision="bf16").checked(Limits())


def test_auto_in_the_app_and_the_predictor_records_the_mode_that_ran(make_tiny_model,
                                                                      monkeypatch):
    monkeypatch.setenv(ENV_FLAGS, AVX2)
    assert RunSettings(precision="auto").checked(Limits()).precision == "int8"
    with pytest.raises(PredictorError, match="bf16 is slower than fp32 on this CPU"):
        Predictor(make_tiny_model(), precision="bf16")
    frames = (torch.rand(3, 40, 56, 3) * 255).to(torch.uint8).numpy()
    predictor = Predictor(make_tiny_model(), short_side=32, precision="auto")
    assert predictor.precision == "int8"
    assert predictor.predict(frames, SHORT).settings["precision"] == "int8"
