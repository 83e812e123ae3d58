"""Evaluation: scores of known predictions, and the CLI end to end on a tiny generated split."""

import pytest
import torch

from rvos.cli.eval import add_cli_arguments, run_cli
from rvos.data.synth import make_clip
from rvos.data.synth_split import write_split
from rvos.eval.evaluate import EvalResult, clip_to_video, evaluate_videos, input_short_side
from rvos.modeling.processing import DEFAULT_SHORT_SIDE
from rvos.training.train import make_tokenizer
from rvos.zoo.builtin import build_builtin_model


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_builtin):
    from rvos.zoo.checkpoint import save_pretrained

    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    overrides = tiny_builtin(dec_layers=1)
    model = build_builtin_model(make_tokenizer(root / "tok"), **overrides).eval()
    save_pretrained(model, root / "model", input_short_side=64)
    return root / "model"


def test_summary_averages_expressions_per_category():
    result = EvalResult(
        [
            {"category": "motion", "J": 1.0, "F": 0.5},
            {"category": "motion", "J": 0.0, "F": 0.5},
            {"category": "appearance", "J": 0.5, "F": 1.0},
        ]
    )
    s = result.summary()
    assert s["motion"] == {"J": 50.0, "F": 50.0, "J&F": 50.0, "n": 2}
    assert s["appearance"]["J&F"] == pytest.approx(75.0)
    assert s["overall"]["J"] == pytest.approx(50.0) and s["overall"]["F"] == pytest.approx(200 / 3)
    assert result.table().splitlines()[-1].startswith("overall")


class _Oracle(torch.nn.Module):
    """Answers with the ground truth: query 2 holds the right mask (as stride-4 logits)."""

    def __init__(self, clip, size):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.by_text = {e.text: clip.masks[e.object_index] for e in clip.expressions}
        self.size = size

    def encode_video(self, frames):
        return frames

    def decode(self, frames, captions):
        t = frames.shape[0]
        h = w = self.size // 4
        logits = torch.full((len(captions), t, 5, 1), -5.0)
        logits[:, :, 2] = 5.0
        masks = torch.full((len(captions), t, 5, h, w), -10.0)
        for k, c in enumerate(captions):
            gt = torch.from_numpy(self.by_text[c]).float()[:, None]
            small = torch.nn.functional.interpolate(gt, size=(h, w), mode="area")[:, 0]
            masks[k, :, 2] = (small - 0.5) * 20
        return {"pred_logits": logits, "pred_masks": masks}


def test_evaluate_videos_scores_an_oracle_near_perfect_and_a_blind_model_zero():
    clip = make_clip("val", 0, size=(64, 64), num_frames=3)
    oracle = _Oracle(clip, 64)
    result = evaluate_videos(oracle, [clip_to_video(clip)], short_side=None)
    assert len(result.records) == len(clip.expressions)
    # Stride-4 logits, bilinearly upsampled, lose a little at the boundaries only.
    assert result.summary()["overall"]["J"] > 85
    assert {r["category"] for r in result.records} <= {
        "appearance",
        "position",
        "motion",
        "comparison",
    }

    class _Blind(_Oracle):
        def decode(self, frames, captions):
            out = super().decode(frames, captions)
            out["pred_masks"] = torch.full_like(out["pred_masks"], -10.0)
            return out

    blind = evaluate_videos(_Blind(clip, 64), [clip_to_video(clip)], short_side=None)
    assert blind.summary()["overall"]["J&F"] == 0


def test_input_short_side_reads_the_model_metadata():
    class M:
        metadata = {"input_short_side": 96}

    assert input_short_side(M()) == 96
    assert input_short_side(object()) == DEFAULT_SHORT_SIDE


def test_cli_end_to_end_prints_the_last_line_format(tmp_path, tiny_model_dir, capsys):
    import argparse

    data = write_split(tmp_path / "test", "test", 2, num_frames=3, size=(64, 64))
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    out_json = tmp_path / "scores.json"
    args = parser.parse_args(
        [str(data), "--checkpoint", str(tiny_model_dir), "--json", str(out_json)]
    )
    assert run_cli(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("J&F: ")
    value = float(lines[-1].split(": ")[1])
    assert 0 <= value <= 100 and lines[-1] == f"J&F: {value:.1f}"
    assert any(line.startswith("overall") for line in lines)
    assert out_json.is_file()


def test_cli_reports_a_missing_split_clearly(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    assert run_cli(parser.parse_args([str(tmp_path / "nowhere")])) == 2
    err = capsys.readouterr().err
    assert "rvos eval: error:" in err and "expressions.json" in err


def test_evaluate_never_imports_train_so_the_two_form_no_cycle():
    # Training imports evaluation for its validation scores; evaluation loads training
    # checkpoints through rvos.zoo.training_checkpoint, not through rvos.training.train (not even
    # lazily).
    import ast
    import inspect

    from rvos.eval import evaluate

    tree = ast.parse(inspect.getsource(evaluate))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
         for alias in node.names}
    assert "rvos.training.train" not in imported
