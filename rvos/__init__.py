"""rvos: ReferFormer (Wu et al., CVPR 2022) in plain PyTorch, with a predictor and a demo."""

__version__ = "0.1.0"

__all__ = ["load_model", "load_official", "load_pretrained", "save_pretrained", "__version__"]


def __getattr__(name: str):
    # Imported on first use: rvos.zoo.checkpoint pulls in torch (seconds), which
    # `rvos --help`, `rvos models`, `rvos download` and `rvos synth` do not need.
    if name == "load_model":
        # lazy: `rvos --help`, `models` and `download` start without torch
        from rvos.zoo import loader as zoo

        return zoo.load_model
    if name in ("load_official", "load_pretrained", "save_pretrained"):
        # lazy: `rvos --help`, `models` and `download` start without torch
        from rvos.zoo import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'rvos' has no attribute {name!r}")
