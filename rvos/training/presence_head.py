"""Training a presence head (`rvos.modeling.presence_head`) for a frozen model.

Two steps, each a command:

    python -m rvos.training.presence_head collect --model rvos/weights/builtin \\
        --seed 12345 --start 0 --count 2800 --out runs/presence/a.npz
    python -m rvos.training.presence_head train --model rvos/weights/builtin \\
        --data runs/presence/*.npz --epochs 4 --out runs/presence/head

``collect`` renders synthetic clips (`rvos.data.synth.generate_clip`; half of them, drawn by
``--seed``, with a no-target expression and a leaving object), sends their frames through a
JPEG round trip as `rvos synth` writes them, runs the model once per clip as the paper does
(the query with the best mean score) and keeps, per expression and frame, what the head sees
(`frame_evidence`, the sentence's tokens and the model's word features) and the truth: whether
the object is on the frame and the IoU of the model's mask with it. Blocks of clips can be
collected by separate processes. ``train`` fits the head to say "keep" where the object is on
the frame and the mask finds it (IoU > 0.3), and writes it into a copy of the model folder
(`save_presence_head`); `benchmarks/presence_builtin.py` then chooses the folder's presence
threshold on val and scores the test splits.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rvos.data.synth import generate_clip
from rvos.data.synth_language import NO_TARGET, vocabulary
from rvos.modeling.presence_head import (
    PresenceHead,
    PresenceHeadConfig,
    chosen_probs,
    frame_evidence,
    save_presence_head,
)
from rvos.modeling.processing import model_short_side, normalize, resize_frames, select_query
from rvos.zoo.loader import load_model_from

KEEP_IOU = 0.3  # a frame's mask counts as finding the object above this IoU


def _jpeg(frames: np.ndarray) -> np.ndarray:
    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError("could not encode a frame as JPEG")
        out.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


@torch.inference_mode()
def collect(model, seed: int, start: int, count: int, max_words: int = 24,
            presence_share: float = 0.5) -> dict[str, np.ndarray]:
    """Clips ``start .. start + count - 1`` of ``seed`` -> arrays, one row per frame:
    ``crops``, ``scalars``, ``input_ids`` / ``words`` (the frame's sentence), ``present``,
    ``iou``, ``expression`` (a running index) and ``no_target``."""
    short = model_short_side(model)
    # Which clips get the no-target and leaving cases: a draw per clip from ``seed``, counted
    # from ``start`` (so that a block is the same whichever process collects it).
    draw = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("crops", "scalars", "input_ids", "words", "present",
                                             "iou", "expression", "no_target")}
    expression = 0
    for i in range(start, start + count):
        hard = draw.random() < presence_share
        options = {"no_target": 1, "leaving": True} if hard else {}
        clip = generate_clip(np.random.default_rng([0, seed, i]), name=f"c{i}", **options)
        frames = resize_frames(_jpeg(clip.frames), short)
        texts = [e.text for e in clip.expressions]
        out = model.decode(model.encode_video(normalize(frames)), texts)
        words, pad, _, tokens = model.encode_text(texts, "cpu")
        for k, e in enumerate(clip.expressions):
            best = select_query(out["pred_logits"][k])
            scores = out["pred_logits"][k, :, :, 0].float().sigmoid().numpy()
            probs = chosen_probs(out["pred_masks"][k, :, best], frames.shape[1:3])
            crops, scalars = frame_evidence(frames, probs, scores, best)
            truth = clip.target_masks(e)
            if truth.shape[1:] != probs.shape[1:]:
                truth = np.stack([cv2.resize(m.astype(np.uint8), probs.shape[:0:-1],
                                             interpolation=cv2.INTER_NEAREST) > 0
                                  for m in truth])
            mask = probs > 0.5
            inter = (truth & mask).reshape(len(truth), -1).sum(1)
            union = (truth | mask).reshape(len(truth), -1).sum(1)
            n = int((~pad[k]).sum())
            ids = np.ones(max_words, np.int64)
            ids[:min(n, max_words)] = tokens["input_ids"][k, :min(n, max_words)].numpy()
            feats = np.zeros((max_words, words.shape[-1]), np.float16)
            feats[:min(n, max_words)] = words[k, :min(n, max_words)].float().numpy()
            t_len = len(crops)
            rows["crops"].append(crops)
            rows["scalars"].append(scalars)
            rows["input_ids"].append(np.repeat(ids[None], t_len, 0))
            rows["words"].append(np.repeat(feats[None], t_len, 0))
            rows["present"].append(truth.any(axis=(1, 2)))
            rows["iou"].append(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
            rows["expression"].append(np.full(t_len, expression))
            rows["no_target"].append(np.full(t_len, e.category == NO_TARGET))
            expression += 1
    return {k: np.concatenate(v) for k, v in rows.items()}


def train(data: dict[str, np.ndarray], config: PresenceHeadConfig, epochs: int = 4,
          seed: int = 0, batch: int = 512, lr: float = 2e-3, log=print) -> PresenceHead:
    """Fit a head on `collect`'s rows (binary cross-entropy on "the object is there and the
    mask finds it"); crops are mirrored at random and 5 % of the words replaced by the unknown
    token, so that no single word decides."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = PresenceHead(config)
    t = {k: torch.from_numpy(v) for k, v in data.items()}
    head.scalar_mean.copy_(t["scalars"].mean(0))
    head.scalar_std.copy_(t["scalars"].std(0) + 1e-3)
    target = (t["present"] & (t["iou"] > KEEP_IOU)).float()
    n = len(target)
    steps = epochs * (n // batch)
    opt = torch.optim.AdamW(head.parameters(), lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    head.train()
    started = time.time()
    for epoch in range(epochs):
        order = torch.randperm(n)
        for i in range(0, n - batch + 1, batch):
            b = order[i:i + batch]
            crops = t["crops"][b]
            if rng.random() < 0.5:
                crops = crops.flip(2)
            ids = t["input_ids"][b]
            unknown = (torch.rand(ids.shape) < 0.05) & ids.gt(config.unk_token_id)
            ids = torch.where(unknown, torch.full_like(ids, config.unk_token_id), ids)
            logit = head(head.encode_text(ids, t["words"][b]), crops, t["scalars"][b])
            loss = F.binary_cross_entropy_with_logits(logit, target[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, {time.time() - started:.0f} s")
    return head.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rvos.training.presence_head",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run the frozen model on synthetic clips")
    c.add_argument("--model", default="rvos/weights/builtin")
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--start", type=int, default=0)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--out", required=True, help=".npz file")
    t = sub.add_parser("train", help="fit a head and write it into a copy of the model folder")
    t.add_argument("--model", default="rvos/weights/builtin")
    t.add_argument("--data", nargs="+", required=True)
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="the new model folder")
    args = ap.parse_args(argv)
    torch.set_num_threads(1 if args.command == "collect" else torch.get_num_threads())
    model, _ = load_model_from(None, args.model, device="cpu", progress=False)
    model.eval()
    if args.command == "collect":
        rows = collect(model, args.seed, args.start, args.count)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.out, **rows)
        print(f"{args.out}: {len(rows['present'])} frames", file=sys.stderr)
        return 0
    parts = [np.load(p, allow_pickle=False) for p in args.data]
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0].files}
    config = PresenceHeadConfig(vocab_size=len(model.tokenizer),
                                num_queries=int(model.config.num_queries),
                                word_dim=int(data["words"].shape[-1]),
                                pad_token_id=int(model.tokenizer.pad_token_id),
                                vocabulary=tuple(vocabulary()))
    head = train(data, config, args.epochs, args.seed)
    if Path(args.out).resolve() != Path(args.model).resolve():
        shutil.copytree(args.model, args.out, dirs_exist_ok=True)
    save_presence_head(head, args.out)
    print(f"{args.out}: presence head on {len(data['present'])} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
