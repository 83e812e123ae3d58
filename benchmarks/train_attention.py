"""Where does the built-in model look for each word? Measure and draw its early-fusion attention.

The early fusion lets every visual token (stride 8) attend to the words of the expression; each
head's attention is a distribution over the words at every position. The mean over heads (what
the original implementation returns, and what the app shows) mixes heads that have specialised,
so this script looks at each head on its own:

1. it measures, over ``--measure`` val clips, whether colour and shape words attend to the
   objects they name: for every colour (shape) word of every expression, in every frame where
   the clip also holds objects of other colours (shapes), the mean attention on the named
   objects against the mean on the other objects — printed per head and for the head mean, as
   the share of cases where the named objects get more and the median ratio;
2. it draws, for a few val expressions, the predicted mask and the maps of the colour word in
   the best colour head and of the shape word in the best shape head, beside the head mean.

    PYTHONPATH=. python benchmarks/train_attention.py docs/builtin_attention.png [--model-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from rvos.data.synth import make_clip
from rvos.data.synth_language import COLOUR_WORDS, SHAPE_WORDS
from rvos.modeling.processing import postprocess_masks, preprocess, select_query
from rvos.viz.draw import overlay_masks
from rvos.viz.explorer import attention_grid

COLOUR_OF = {w: c for c, ws in COLOUR_WORDS.items() for w in ws}
# One-word shape names only ("plus sign" spans two words).
SHAPE_OF = {s: k for k, pairs in SHAPE_WORDS.items() for p in pairs for s in p if " " not in s}
KINDS = {"colour": (COLOUR_OF, "colour"), "shape": (SHAPE_OF, "shape")}


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


def _area_fraction(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Fraction of each cell of an ``[h, w]`` grid that the boolean mask covers."""
    return cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def _run(model, clip, texts: list[str]) -> dict:
    side = int(getattr(model, "metadata", {}).get("input_short_side", 128))
    x = preprocess(clip.frames, side)
    with torch.inference_mode():
        # One backbone pass; decode shares it among the expressions.
        return model.decode(model.encode_video(x), texts, return_attention=True)


def grounding(model, num_clips: int, level: int = 0) -> dict:
    """Do colour and shape words attend to the objects they name? (see the module docstring)

    Returns ``{(kind, head): (share, median ratio, cases)}`` for kind "colour"/"shape" and
    head 0..M-1 or "mean"; a case is one word in one frame.
    """
    ratios: dict[tuple[str, int | str], list[float]] = {}
    for i in range(num_clips):
        clip = make_clip("val", i)
        texts = [e.text for e in clip.expressions]
        att = _run(model, clip, texts)["attention"]
        per_head = att["fusion_heads"][level]  # [B, M, T, h, w, L]
        heads, _, h, w = per_head.shape[1:5]
        for b in range(len(texts)):
            variants = {k: per_head[b, k] for k in range(heads)}
            variants["mean"] = att["fusion"][level][b]
            for t in range(clip.num_frames):
                cover = [_area_fraction(m[t], h, w) for m in clip.masks]
                for head, maps in variants.items():
                    labels, heats = word_maps(maps, att["input_ids"][b], model.tokenizer, t)
                    for word, heat in zip(labels, heats, strict=True):
                        for kind, (table, attr) in KINDS.items():
                            if word not in table:
                                continue
                            named = [getattr(o, attr) == table[word] for o in clip.objects]
                            on = sum(c for c, n in zip(cover, named, strict=True) if n)
                            off = sum(c for c, n in zip(cover, named, strict=True) if not n)
                            if all(named) or not any(named) or on.sum() < 1 or off.sum() < 1:
                                continue  # nothing to tell apart, or hidden in this frame
                            mean_on = float((heat * on).sum() / on.sum())
                            mean_off = float((heat * off).sum() / off.sum())
                            ratios.setdefault((kind, head), []).append(
                                mean_on / max(mean_off, 1e-12))
    return {key: (float(np.mean(np.array(r) > 1)), float(np.median(r)), len(r))
            for key, r in ratios.items()}


def pick_examples(n: int) -> list:
    """(clip, expression index) pairs from the val split: appearance expressions that name a
    colour and a shape, in clips where other objects share one of the two."""
    picked = []
    for i in range(500):
        clip = make_clip("val", i)
        for k, e in enumerate(clip.expressions):
            words = set(e.text.split())
            colour = next((COLOUR_OF[w] for w in words if w in COLOUR_OF), None)
            shape = next((SHAPE_OF[w] for w in words if w in SHAPE_OF), None)
            if e.category != "appearance" or colour is None or shape is None:
                continue
            others = [o for j, o in enumerate(clip.objects) if j != e.object_index]
            if any(o.colour == colour for o in others) or any(o.shape == shape for o in others):
                picked.append((clip, k))
                break
        if len(picked) == n:
            break
    return picked


def figure(model, examples: list, colour_head: int, shape_head: int, frame: int = 3
           ) -> np.ndarray:
    rows = []
    for clip, e_index in examples:
        expr = clip.expressions[e_index]
        out = _run(model, clip, [expr.text])
        att = out["attention"]
        heads = att["fusion_heads"][0][0]  # [M, T, h, w, L], stride 8
        labels, by_colour = word_maps(heads[colour_head], att["input_ids"][0],
                                      model.tokenizer, frame)
        _, by_shape = word_maps(heads[shape_head], att["input_ids"][0], model.tokenizer, frame)
        _, by_mean = word_maps(att["fusion"][0][0], att["input_ids"][0], model.tokenizer, frame)
        tiles, names = [], []
        for kind, head, maps in (("colour", colour_head, by_colour),
                                 ("shape", shape_head, by_shape)):
            table = KINDS[kind][0]
            for word, heat, mean in zip(labels, maps, by_mean, strict=True):
                if word in table:
                    tiles += [heat, mean]
                    names += [f'"{word}", head {head}', f'"{word}", mean of heads']
                    break
        best = select_query(out["pred_logits"][0])
        mask = postprocess_masks(out["pred_masks"][0, :, best], clip.frames.shape[1:3])[frame]
        shown = overlay_masks(clip.frames[frame], [mask.numpy()])
        tiles.insert(0, None)
        names.insert(0, "prediction")
        grid = attention_grid(clip.frames[frame], [np.zeros((2, 2)) if m is None else m
                                                   for m in tiles], names, cols=len(tiles),
                              tile_width=180)
        # The first tile is the prediction, not a heat map.
        top = grid.shape[0] - 180
        grid[top:, :180] = cv2.resize(shown, (180, 180), interpolation=cv2.INTER_AREA)
        caption = np.full((26, grid.shape[1], 3), 255, np.uint8)
        cv2.putText(caption, f'"{expr.text}"', (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (30, 30, 30), 1, cv2.LINE_AA)
        rows.append(np.concatenate([caption, grid], axis=0))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    return np.concatenate(rows, axis=0)


def main() -> None:
    from rvos.zoo.checkpoint import load_pretrained
    from rvos.zoo.registry import BUILTIN_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("--model-dir", type=Path, default=BUILTIN_DIR)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--measure", type=int, default=40, help="val clips to measure")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_pretrained(args.model_dir).eval()
    stats = grounding(model, args.measure)
    print("early fusion, stride 8: words attending more to the objects they name than to the "
          f"other objects ({args.measure} val clips)")
    best = {}
    for (kind, head), (share, median, n) in sorted(stats.items(), key=lambda kv: str(kv[0])):
        print(f"  {kind} words, head {head}: {100 * share:.0f} % of {n} cases, "
              f"median ratio {median:.2f}")
        if head != "mean" and share > best.get(kind, (None, -1.0))[1]:
            best[kind] = (head, share)
    print(f"best colour head {best['colour'][0]}, best shape head {best['shape'][0]}")
    img = figure(model, pick_examples(args.examples), best["colour"][0], best["shape"][0])
    args.png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.png), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(args.png)


if __name__ == "__main__":
    main()
