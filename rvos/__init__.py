"""rvos: ReferFormer (Wu et al., CVPR 2022) in plain PyTorch, with a predictor and a demo."""

__version__ = "0.1.0"

from rvos.checkpoint import load_official, load_pretrained, save_pretrained

__all__ = ["load_official", "load_pretrained", "save_pretrained", "__version__"]
