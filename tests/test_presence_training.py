"""Training the built-in model to say "not there": the losses on the generator's no-target
expressions and out-of-view frames push the right scores down, and the shipped model's
presence threshold empties most frames of expressions that refer to nothing."""

from pathlib import Path

import torch

from rvos.data.synth_language import NO_TARGET
from rvos.training.losses import ReferringCriterion
from rvos.training.train import TrainClips, collate, make_tokenizer, select_videos
from rvos.zoo.builtin import build_builtin_model

BUILTIN = Path(__file__).resolve().parents[1] / "rvos" / "weights" / "builtin"


def _subset(batch: dict, keep: list[int]) -> dict:
    return {**batch, "video_index": batch["video_index"][keep],
            "captions": [batch["captions"][i] for i in keep],
            "targets": [batch["targets"][i] for i in keep]}


def test_training_on_no_target_expressions_lowers_every_class_score(tiny_builtin):
    torch.manual_seed(0)
    model = build_builtin_model(make_tokenizer(BUILTIN / "tokenizer"), **tiny_builtin()).train()
    ds = TrainClips(frames=3, size=64, seed=0, jpeg_prob=0, no_target=1.0)
    batch = collate([ds[0], ds[1]])
    absent = [i for i, c in enumerate(batch["categories"]) if c == NO_TARGET]
    assert len(absent) == 2
    batch = _subset(batch, absent)
    criterion = ReferringCriterion()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def scores() -> torch.Tensor:
        with torch.no_grad():
            visual = select_videos(model.encode_video(batch["frames"]), batch["video_index"])
            return model.decode(visual, batch["captions"])["pred_logits"].sigmoid()

    before = scores()
    for _ in range(5):
        visual = select_videos(model.encode_video(batch["frames"]), batch["video_index"])
        losses = criterion(model.decode(visual, batch["captions"]), batch["targets"])
        # Nothing to match: no box or mask loss, only negatives for the class head.
        for name in ("loss_bbox", "loss_giou", "loss_dice", "loss_mask"):
            assert losses[name].item() == 0, name
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    after = scores()
    # Every query's score on every frame went down, the highest one too.
    assert (after < before).float().mean() > 0.95
    assert after.max() < before.max()


def test_out_of_view_frames_push_the_matched_query_down_and_its_mask_empty(tiny_builtin):
    torch.manual_seed(0)
    model = build_builtin_model(make_tokenizer(BUILTIN / "tokenizer"), **tiny_builtin()).train()
    ds = TrainClips(frames=6, size=64, seed=1, jpeg_prob=0, no_target=1.0)
    item = next(ds[i] for i in range(20) if any(
        v.any() and not v.all() for v in ds[i]["valid"]))
    k = next(j for j, v in enumerate(item["valid"]) if v.any() and not v.all())
    batch = _subset(collate([item]), [k])
    valid = batch["targets"][0]["valid"]
    visual = select_videos(model.encode_video(batch["frames"]), batch["video_index"])
    out = model.decode(visual, batch["captions"])
    out = {"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"],
           "pred_masks": out["pred_masks"]}
    for name in out:
        out[name].retain_grad()
    criterion = ReferringCriterion(aux_loss=False)
    (q,), _ = criterion.matcher(out, batch["targets"])[0]
    criterion(out, batch["targets"])["loss"].backward()
    g = out["pred_logits"].grad[0, :, :, 0]  # [T, Q]; descent moves against the gradient
    assert (g[valid, q] < 0).all()  # visible: the matched query's score goes up
    assert (g[~valid, q] > 0).all()  # out of view: it goes down, as every other query's
    assert (torch.cat([g[:, :q], g[:, q + 1:]], dim=1) > 0).all()
    # Its mask is pushed towards empty where the object is out of view, and no box is asked.
    assert (out["pred_masks"].grad[0, ~valid, q] >= 0).all()
    assert out["pred_masks"].grad[0, ~valid, q].sum() > 0
    assert (out["pred_boxes"].grad[0, ~valid] == 0).all()
