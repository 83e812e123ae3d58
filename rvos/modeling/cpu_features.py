"""What this CPU computes fast: its instruction-set extensions, and so which precisions beat fp32.

Read from ``/proc/cpuinfo`` (Linux: ``flags`` on x86, ``Features`` on ARM); elsewhere from
``torch.backends.cpu.get_cpu_capability()``. ``ONEDNN_MAX_CPU_ISA`` and ``ATEN_CPU_CAPABILITY``
cap what torch uses: with ``ONEDNN_MAX_CPU_ISA=AVX2`` oneDNN leaves AMX and AVX-512 BF16 unused,
so bf16 counts as emulated even where the hardware has it. ``RVOS_CPU_FLAGS="avx2 fma"`` replaces
the flags read from the CPU (tests fake a CPU with it).

What "fast" means here was measured (issue 24, ``benchmarks/bench_referformer.py``): bf16 under
autocast is 8× slower than fp32 without bfloat16 hardware (emulated), faster with AMX or AVX-512
BF16; int8 (dynamic, fbgemm) is 1.29× faster than fp32 on a plain AVX2 CPU and 1.10× on an AMX
Xeon, so it is offered wherever AVX2 (x86) or the dot-product extension (ARM) is present.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["ENV_FLAGS", "CpuFeatures", "cpu_features", "parse_cpuinfo"]

ENV_FLAGS = "RVOS_CPU_FLAGS"
# The flags that decide a precision, in the order the benchmarks print them.
RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx_vnni", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd",
                  "asimddp", "bf16", "i8mm", "sve", "sve2")
_ARM_FLAGS = {"asimd", "asimddp", "neon", "fp", "bf16", "i8mm", "sve", "sve2"}
# oneDNN's ISA levels, lowest first (ONEDNN_MAX_CPU_ISA); later names include the earlier ones.
_ONEDNN_LEVEL = {"sse41": 0, "avx": 1, "avx2": 2, "avx2_vnni": 3, "avx2_vnni_2": 4,
                 "avx512_core": 5, "avx512_core_vnni": 6, "avx512_core_bf16": 7,
                 "avx512_core_fp16": 8, "avx10_1_512": 8, "avx512_core_amx": 9,
                 "avx10_1_512_amx": 9, "avx512_core_amx_fp16": 10, "avx10_1_512_amx_fp16": 10}
_BF16_LEVEL = {"AMX": 9, "AVX-512 BF16": 7}


@dataclass(frozen=True)
class CpuFeatures:
    """This CPU as far as precision goes.

    Attributes:
        model: the CPU's name (``model name`` in /proc/cpuinfo), or ``"unknown CPU"``.
        arch: ``"x86"``, ``"arm"`` or ``"unknown"``.
        flags: every extension the CPU reports (lower case, as /proc/cpuinfo spells them).
        onednn_cap: ``ONEDNN_MAX_CPU_ISA`` when set (lower case), else None.
        aten_cap: ``ATEN_CPU_CAPABILITY`` when set (lower case), else None.
        source: where the flags came from: ``/proc/cpuinfo``, ``RVOS_CPU_FLAGS`` or ``torch``.
    """

    model: str
    arch: str
    flags: frozenset[str]
    onednn_cap: str | None = None
    aten_cap: str | None = None
    source: str = "/proc/cpuinfo"

    @property
    def bf16_unit(self) -> str | None:
        """The hardware that multiplies bfloat16 (``"AMX"``, ``"AVX-512 BF16"``, ``"ARM BF16"``)
        and that torch may use here, or None (bf16 is then emulated, slower than fp32)."""
        if self.arch == "arm":
            return "ARM BF16" if "bf16" in self.flags else None
        if self.aten_cap in ("default", "avx2"):
            return None
        level = _ONEDNN_LEVEL.get(self.onednn_cap or "", 99)
        if {"amx_tile", "amx_bf16"} <= self.flags and level >= _BF16_LEVEL["AMX"]:
            return "AMX"
        if "avx512_bf16" in self.flags and level >= _BF16_LEVEL["AVX-512 BF16"]:
            return "AVX-512 BF16"
        return None

    @property
    def int8_unit(self) -> str | None:
        """The instructions int8 products run on here (``"AMX"``, ``"AVX-512 VNNI"``,
        ``"AVX-VNNI"``, ``"AVX2"``, ``"ARM dot product"``), or None (int8 not faster than fp32)."""
        if self.arch == "arm":
            return "ARM dot product" if "asimddp" in self.flags else None
        level = _ONEDNN_LEVEL.get(self.onednn_cap or "", 99)
        if {"amx_tile", "amx_int8"} <= self.flags and level >= 9:
            return "AMX"
        if "avx512_vnni" in self.flags and level >= 6:
            return "AVX-512 VNNI"
        if "avx_vnni" in self.flags and level >= 3:
            return "AVX-VNNI"
        return "AVX2" if "avx2" in self.flags else None

    @property
    def fast_precisions(self) -> tuple[str, ...]:
        """The precisions faster than fp32 on this CPU, fastest first (fp32 itself not listed).

        bf16 leads on AMX only: with AVX-512 BF16 alone (e.g. AMD Zen 4) autocast's conversions
        eat most of the gain (a 1024² product 1.15× fp32, a 3×3 convolution 1.0×, measured on
        an EPYC), while int8 was 1.29× fp32 on a plain AVX2 CPU."""
        order = (("bf16", self.bf16_unit), ("int8", self.int8_unit))
        if self.bf16_unit != "AMX":
            order = order[::-1]
        return tuple(p for p, unit in order if unit is not None)

    def why_slow(self, precision: str) -> str:
        """Why ``precision`` is not faster than fp32 here, in a few words."""
        if precision == "bf16":
            missing = "no BF16 extension" if self.arch == "arm" else "no AMX or AVX-512 BF16"
            if self.arch != "arm" and self.aten_cap in ("default", "avx2"):
                return f"ATEN_CPU_CAPABILITY={self.aten_cap} keeps torch off bfloat16 units"
            if self.arch != "arm" and self.onednn_cap and (
                    {"amx_bf16", "avx512_bf16"} & self.flags):
                return (f"ONEDNN_MAX_CPU_ISA={self.onednn_cap.upper()} keeps oneDNN off its "
                        "bfloat16 units")
            return missing
        if precision == "int8":
            return "no dot-product extension" if self.arch == "arm" else "no AVX2 or VNNI"
        return "not a CPU precision"

    def header(self) -> str:
        """One line for benchmark output: the model, the relevant flags, the caps."""
        flags = " ".join(f for f in RELEVANT_FLAGS if f in self.flags) or "none of note"
        caps = "".join(f", {name}={value.upper()}" for name, value in
                       (("ONEDNN_MAX_CPU_ISA", self.onednn_cap),
                        ("ATEN_CPU_CAPABILITY", self.aten_cap)) if value)
        fast = ", ".join(self.fast_precisions) or "none"
        return f"CPU: {self.model} ({self.arch}; {flags}{caps}); faster than fp32: {fast}"

    def as_dict(self) -> dict:
        """For the benchmarks' JSON."""
        return {"model": self.model, "arch": self.arch,
                "flags": [f for f in RELEVANT_FLAGS if f in self.flags],
                "onednn_max_cpu_isa": self.onednn_cap, "aten_cpu_capability": self.aten_cap,
                "bf16_unit": self.bf16_unit, "int8_unit": self.int8_unit,
                "faster_than_fp32": list(self.fast_precisions), "source": self.source}


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str], str]:
    """(model, flags, arch) from the text of /proc/cpuinfo (the first processor's entry)."""
    model, flags, arch = "", frozenset(), "unknown"
    parts: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in parts:
            parts[key] = value.strip()
    if "flags" in parts:
        flags, arch = frozenset(parts["flags"].lower().split()), "x86"
    elif "features" in parts:
        flags, arch = frozenset(parts["features"].lower().split()), "arm"
    model = (parts.get("model name") or parts.get("hardware") or parts.get("cpu model")
             or (f"ARM CPU part {parts['cpu part']}" if "cpu part" in parts else ""))
    return model or "unknown CPU", flags, arch


def cpu_features(cpuinfo: str | None = None, env: Mapping[str, str] | None = None) -> CpuFeatures:
    """This CPU's features (``cpuinfo``: /proc/cpuinfo's text, read when None; ``env``: the
    environment, ``os.environ`` when None, for ``RVOS_CPU_FLAGS`` and the ISA caps)."""
    env = os.environ if env is None else env
    source = "/proc/cpuinfo"
    if cpuinfo is None:
        cpuinfo = _read_cpuinfo()
    model, flags, arch = parse_cpuinfo(cpuinfo)
    if not flags and not env.get(ENV_FLAGS):
        flags, arch, source = _torch_flags()
    if env.get(ENV_FLAGS):
        flags, source = frozenset(env[ENV_FLAGS].lower().replace(",", " ").split()), ENV_FLAGS
        arch = "arm" if flags & _ARM_FLAGS else "x86" if flags else arch
    onednn = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").lower()
    aten = (env.get("ATEN_CPU_CAPABILITY") or "").lower()
    return CpuFeatures(model, arch, flags, None if onednn in ("", "all", "default") else onednn,
                       aten or None, source)


@functools.lru_cache(maxsize=1)
def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _torch_flags() -> tuple[frozenset[str], str, str]:
    """Flags as far as torch's dispatch level tells (no /proc/cpuinfo: macOS, Windows)."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        # Every Apple Silicon and ARMv8.2+ server core has the dot-product extension; whether
        # it has BF16 is not told, so bf16 is not counted as native.
        return frozenset({"asimd", "asimddp"}), "arm", "torch"
    capability = torch.backends.cpu.get_cpu_capability().lower()
    flags = {"avx512": {"avx2", "fma", "avx512f"}, "avx2": {"avx2", "fma"}}.get(capability, set())
    return frozenset(flags), "x86" if machine in ("x86_64", "amd64") else "unknown", "torch"
