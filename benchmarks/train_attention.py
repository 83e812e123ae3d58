"""Where does the built-in model look for each word? Draw its vision-language attention.

For a few synthetic val clips, runs the model with ``return_attention=True`` and shows, for
every word of an expression, the attention that the visual tokens of one frame pay to that
word (early fusion at stride 8, or the cross-modal FPN at stride 4), next to the predicted mask.

    PYTHONPATH=. python benchmarks/train_attention.py docs/builtin_attention.png [--model-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from rvos.inference import postprocess_masks, preprocess, select_query
from rvos.synth import make_clip
from rvos.visualize import attention_grid, overlay_masks


def word_maps(attn: torch.Tensor, input_ids: torch.Tensor, tokenizer, frame: int):
    """Per-word heat maps of one frame.

    Arguments:
        attn: ``[T, h, w, L]`` attention of visual tokens over the L tokens.
        input_ids: ``[L]`` the caption's tokens.
    Returns:
        (labels, maps): one ``[h, w]`` map per word (summing its BPE pieces), special and
        padding tokens left out.
    """
    tokens = tokenizer.convert_ids_to_tokens(input_ids.tolist())
    labels, maps = [], []
    for i, tok in enumerate(tokens):
        if tok in tokenizer.all_special_tokens:
            continue
        piece = tok.replace("\u0120", " ")
        m = attn[frame, :, :, i].float().numpy()
        if piece.startswith(" ") or not labels:
            labels.append(piece.strip())
            maps.append(m.copy())
        else:  # a continuation piece of the previous word
            labels[-1] += piece
            maps[-1] += m
    return labels, maps


def figure(model, clips: list, source: str, frame: int = 2, max_words: int = 6) -> np.ndarray:
    rows = []
    side = int(getattr(model, "metadata", {}).get("input_short_side", 128))
    for clip, e_index in clips:
        expr = clip.expressions[e_index]
        x = preprocess(clip.frames, side)
        with torch.inference_mode():
            out = model(x, [expr.text], return_attention=True)
        att = out["attention"]
        maps = att["fusion"][0][0] if source == "fusion" else att["fpn"][0][0]
        labels, heats = word_maps(maps, att["input_ids"][0], model.tokenizer, frame)
        labels, heats = labels[:max_words], heats[:max_words]
        best = select_query(out["pred_logits"][0])
        mask = postprocess_masks(out["pred_masks"][0, :, best], clip.frames.shape[1:3])[frame]
        shown = overlay_masks(clip.frames[frame], [mask.numpy()])
        grid = attention_grid(clip.frames[frame], heats, labels, cols=max_words, tile_width=160)
        left = np.full((grid.shape[0], 164, 3), 255, np.uint8)
        tile = cv2.resize(shown, (160, 160), interpolation=cv2.INTER_AREA)
        left[grid.shape[0] - 160 :, :160] = tile
        row = np.concatenate([left, grid], axis=1)
        caption = np.full((26, row.shape[1], 3), 255, np.uint8)
        cv2.putText(
            caption,
            f'"{expr.text}"  ({expr.category})',
            (4, 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (30, 30, 30),
            1,
            cv2.LINE_AA,
        )
        rows.append(np.concatenate([caption, row], axis=0))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def pick_examples(n: int, categories=("appearance", "appearance", "position", "motion")):
    """(clip, expression index) pairs from the val split, one per requested category,
    preferring expressions that name a colour and a shape."""
    from rvos.synth import COLOUR_WORDS, SHAPE_WORDS

    colours = {w for ws in COLOUR_WORDS.values() for w in ws}
    shapes = {s for pairs in SHAPE_WORDS.values() for p in pairs for s in p}
    picked, used = [], set()
    for want in categories[:n]:
        for i in range(200):
            if i in used:
                continue
            clip = make_clip("val", i)
            for k, e in enumerate(clip.expressions):
                words = set(e.text.split())
                if e.category == want and words & colours and words & shapes:
                    picked.append((clip, k))
                    used.add(i)
                    break
            else:
                continue
            break
    return picked


def main() -> None:
    from rvos.checkpoint import load_pretrained
    from rvos.registry import BUILTIN_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("--model-dir", type=Path, default=BUILTIN_DIR)
    parser.add_argument("--source", choices=("fusion", "fpn"), default="fusion")
    parser.add_argument("--examples", type=int, default=4)
    args = parser.parse_args()
    model = load_pretrained(args.model_dir).eval()
    img = figure(model, pick_examples(args.examples), args.source)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.png), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(args.png)


if __name__ == "__main__":
    main()
