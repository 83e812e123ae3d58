"""The ReferFormer network, one concern per file."""

from rvos.modeling.referformer import (
    ReferFormer,
    ReferFormerConfig,
    VisualFeatures,
    build_referformer,
)

__all__ = ["ReferFormer", "ReferFormerConfig", "VisualFeatures", "build_referformer"]
