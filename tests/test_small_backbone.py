"""The built-in model's (2+1)-D backbone: output contract and mixing across frames."""

import math

import pytest
import torch

from rvos.modeling.small_backbone import SmallVideoBackbone


def _backbone(**kw):
    torch.manual_seed(0)
    return SmallVideoBackbone(channels=(8, 16, 24, 32), stem_channels=8, **kw).eval()


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (1, 1)])
@pytest.mark.parametrize("frames", [1, 3])
def test_shapes_follow_the_backbone_contract(size, frames):
    net = _backbone()
    assert net.strides == [4, 8, 16, 32] and net.num_channels == [8, 16, 24, 32]
    h, w = size
    with torch.no_grad():
        feats = net(torch.randn(2 * frames, 3, h, w), num_frames=frames)
    assert len(feats) == 4
    for f, s, c in zip(feats, net.strides, net.num_channels, strict=True):
        assert tuple(f.shape) == (2 * frames, c, math.ceil(h / s), math.ceil(w / s))


def test_changing_one_frame_changes_its_neighbours_but_not_other_videos():
    net = _backbone()
    x = torch.randn(2 * 5, 3, 32, 32)  # 2 videos of 5 frames
    y = x.clone()
    y[2] = torch.randn(3, 32, 32)  # video 0, frame 2
    with torch.no_grad():
        fx, fy = net(x, 5), net(y, 5)
    for level in range(4):
        diff = (fx[level] - fy[level]).flatten(1).abs().amax(1)
        assert diff[1] > 1e-4 and diff[3] > 1e-4, level  # frames t-1 and t+1 see the change
        assert diff[5:].max() == 0, level  # the other video does not
    # Per stage one temporal conv of kernel 3: frame 2 reaches frame 0 by the second stage.
    assert (fx[1] - fy[1])[0].abs().max() > 1e-4


def test_one_frame_videos_are_processed_independently():
    # With T = 1 the temporal padding is all zeros: the clip is processed on its own.
    net = _backbone()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = net(x, 1)
        b = net(torch.cat([x, x]), 1)  # two one-frame videos
    for fa, fb in zip(a, b, strict=True):
        assert torch.allclose(fa[0], fb[1], atol=1e-5)


def test_gradients_reach_the_first_layer_and_bad_input_raises():
    net = _backbone(norm="gn").train()
    feats = net(torch.randn(6, 3, 32, 32), 3)
    sum(f.mean() for f in feats).backward()
    assert net.stem[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="does not divide"):
        net(torch.randn(5, 3, 32, 32), 3)
    with pytest.raises(ValueError, match=r"\[B\*T, 3, H, W\]"):
        net(torch.randn(2, 1, 32, 32), 1)
    with pytest.raises(ValueError, match="4 entries"):
        SmallVideoBackbone(channels=(8, 16, 32))
