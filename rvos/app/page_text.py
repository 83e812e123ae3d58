"""What the page says: its introduction, how ReferFormer works (each stage linking to the view
that shows it), and the text at the head of each section. Markdown; app.py lays it out."""

INTRO = """\
# Referring video object segmentation: ReferFormer
*Language as Queries for Referring Video Object Segmentation* (Wu et al., CVPR 2022). Each
expression becomes the queries of a transformer; on every frame each query proposes a box and
a mask with a score, and the best-scoring query over the clip is the answer. Upload a clip or
pick an example, type up to four expressions (one per line) and press **Segment**; then step
through the frames below.
"""

# Each stage links to the view that shows it (elem_ids; the browser test follows them).
HOW_IT_WORKS = """\
ReferFormer treats the sentence as a set of **queries** that look for the object in every frame.

1. **Backbone and text encoder.** A CNN or (Video-)Swin turns each frame into feature maps at
   strides 4-32; RoBERTa turns the sentence into one feature per word and one for the sentence.
2. **Early vision-language fusion.** Every pixel of the feature maps attends to the words and is
   multiplied by what it finds, so the maps already know what the sentence asks for:
   [Word attention](#attn) (feature levels "early fusion").
3. **Language as queries.** The sentence feature plus Q learned position embeddings make Q
   queries, the same in every frame, so query i is one object hypothesis through the clip:
   [Queries](#queries).
4. **Deformable transformer decoder.** Each layer starts every query from a reference point,
   samples the features around it and refines the query's box and score (iterative box
   refinement); the next layer starts from the new box's centre, and the last layer's box is the
   answer: [Decoder, layer by layer](#decoder), and the sampling points in [Queries](#queries).
5. **Cross-modal FPN.** The multi-scale features meet the words again and become stride-4 mask
   features: [Word attention](#attn) (feature levels "cross-modal FPN").
6. **Dynamic mask head.** Each query generates its own small convolution kernels and applies them
   to the mask features, so every query has a mask: [Every query's mask](#qmasks).
7. **Choosing the answer.** The query with the best mean score over the clip is the object and
   its masks the output: [Scores over time](#scores). Another backbone sees differently:
   [Compare two models](#compare).
"""

EVALUATE_ABOUT = ("Upload the true masks of this clip as a zip of per-frame PNGs (palette, "
                  "label or 0/255; one folder per expression, or one folder whose pixel "
                  "value k is expression k) and press **Evaluate**: the result above, at its "
                  "threshold, is scored with the DAVIS J (region IoU) and F (boundary "
                  "accuracy) per frame and per expression. A masks.zip of this app reads "
                  "as it is. The curves' vertical line is the frame the Frame explorer "
                  "below shows.")

EXPLORER_ABOUT = ("## Frame explorer\nEvery query's box and score on the chosen frame (the "
                  "chosen query in yellow, dots are reference points), which pixels attend "
                  "to each word, and every query's score over time.")

DECODER_ABOUT = ("### Decoder, layer by layer\nEach decoder layer refines every query's box "
                 "and re-scores it (iterative box refinement). A path runs from a query's "
                 "learned start point (ring) through its box centre after each layer (dots, "
                 "dark to light); pick one query to see its box after every layer. Below, "
                 "every query's own mask on this frame: each query has its dynamic mask "
                 "kernels, so each has a mask, not only the chosen one. In the paper's "
                 "figure all queries crowd around the referred object; the built-in model's "
                 "do not (on its test clips most of the other queries sit on other objects "
                 "or empty ground: README, The app).")

WORDS_ABOUT = ("One expression run again with each word left out (and, if asked, each "
               "colour or object word swapped for another of its kind): how much the "
               "answer changes per word. The video is read and the backbone run once "
               "for all the sentences, so each word costs less than a run of its own "
               "(about two thirds of one for the built-in model on a CPU; README).")

COMPARE_ABOUT = ("The clip and expressions above (with the Advanced settings) through two "
                 "models: both overlays side by side in one video, so they stay in step "
                 "frame by frame, and each model's query scores. The same model twice is "
                 "allowed (it runs once). Another system (SAM2, Sa2VA, ReferDINO, ...): "
                 "give its masks for this clip as a zip of per-frame PNGs in place of "
                 "model B.")
