"""Variable-length frame sequences: padded batches, masks, and an encoder that ignores padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recommenders.models.content_config import AugmentConfig, EncoderConfig
from recommenders.models.frame_store import FrameStore, length_bucketed_batches
from recommenders.models.nn.augment import mask_frames, mixup, permute_frames
from recommenders.models.nn.encoders import AttentionPooling, FrameEncoder, TagNet, padding_mask


@pytest.fixture
def store() -> FrameStore:
    """Three tracks of 2, 5 and 3 frames of dimension 4; frame values encode (track, position)."""
    lengths = np.array([2, 5, 3])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = np.concatenate([np.full((n, 4), 10 * t, dtype=np.float16) + np.arange(n, dtype=np.float16)[:, None] for t, n in enumerate(lengths)])
    return FrameStore(np.array([7, 8, 9]), frames, offsets)


def test_batch_pads_with_zeros_after_each_length(store: FrameStore) -> None:
    frames, lengths = store.batch(np.array([0, 1, 2]))
    assert frames.shape == (3, 5, 4) and frames.dtype == np.float32
    np.testing.assert_array_equal(lengths, [2, 5, 3])
    np.testing.assert_array_equal(frames[0, :, 0], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(frames[2, :, 0], [20, 21, 22, 0, 0])


def test_training_crop_takes_a_contiguous_window(store: FrameStore) -> None:
    frames, lengths = store.batch(np.array([1, 1, 1, 1]), max_len=3, rng=np.random.default_rng(0))
    assert frames.shape == (4, 3, 4)
    np.testing.assert_array_equal(lengths, [3, 3, 3, 3])
    for row in frames[:, :, 0]:
        assert np.all(np.diff(row) == 1) and 10 <= row[0] <= 12  # a window of track 1's frames 10..14
    first, _ = store.batch(np.array([1]), max_len=3)
    np.testing.assert_array_equal(first[0, :, 0], [10, 11, 12])  # no rng: the first max_len frames


def test_subset_keeps_each_rows_frames(store: FrameStore) -> None:
    sub = store.subset(np.array([2, 0]))
    np.testing.assert_array_equal(sub.tracks, [9, 7])
    np.testing.assert_array_equal(sub.lengths, [3, 2])
    np.testing.assert_array_equal(sub.batch(np.array([0]))[0][0, :, 0], [20, 21, 22])


def test_store_rejects_empty_sequences() -> None:
    with pytest.raises(ValueError, match="at least one content frame"):
        FrameStore(np.array([0, 1]), np.zeros((2, 3), np.float16), np.array([0, 2, 2]))


def test_bucketed_batches_cover_every_row_once() -> None:
    lengths = np.random.default_rng(1).integers(1, 30, 103)
    batches = list(length_bucketed_batches(lengths, 10, np.random.default_rng(2), bucket_batches=3))
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    assert max(len(b) for b in batches) == 10


def test_padding_mask_marks_positions_past_the_length() -> None:
    mask = padding_mask(torch.tensor([1, 3]), 4)
    assert mask.tolist() == [[False, True, True, True], [False, False, False, True]]


def test_encoder_output_ignores_padding() -> None:
    torch.manual_seed(0)
    encoder = FrameEncoder(4, EncoderConfig(d_model=8, heads=2, layers=2, feedforward=16, dropout=0.0)).eval()
    frames = torch.randn(3, 5, 4)
    lengths = torch.tensor([2, 5, 3])
    frames[padding_mask(lengths, 5)] = 0.0
    out = encoder(frames, lengths)
    assert out.shape == (3, 8)
    garbage = torch.cat([frames, torch.randn(3, 4, 4)], dim=1)  # more padding, filled with noise
    garbage[0, 2:] = 99.0
    torch.testing.assert_close(encoder(garbage, lengths), out, rtol=1e-5, atol=1e-5)
    alone = encoder(frames[:1, :2], lengths[:1])  # the row on its own, without padding
    torch.testing.assert_close(alone, out[:1], rtol=1e-5, atol=1e-5)


def test_attention_pooling_gives_padding_zero_weight() -> None:
    pooling = AttentionPooling(2)
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    pooled = pooling(hidden, padding_mask(torch.tensor([2]), 3))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0]]))  # a plain mean at initialisation


def test_tag_net_outputs_one_logit_per_tag() -> None:
    net = TagNet(4, 7, EncoderConfig(d_model=8, heads=2, layers=1, feedforward=16), hidden=16, dropout=0.0)
    assert net(torch.randn(2, 3, 4), torch.tensor([3, 1])).shape == (2, 7)


def test_augmentations_leave_padding_at_zero() -> None:
    rng = np.random.default_rng(0)
    lengths = np.array([2, 5, 3])
    frames = torch.randn(3, 5, 4)
    frames[padding_mask(torch.from_numpy(lengths), 5)] = 0.0
    config = AugmentConfig(reverse=1.0, roll=1.0, mask=1.0, mask_fraction=0.5, mixup=1.0)
    out = mask_frames(permute_frames(frames, lengths, config, rng), lengths, config, rng)
    mixed, targets = mixup(out, torch.eye(3), lengths, config, rng)
    pad = padding_mask(torch.from_numpy(lengths), 5)
    assert torch.all(mixed[pad] == 0.0)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(3))  # convex blends of one-hot targets
    permuted = permute_frames(frames, lengths, AugmentConfig(reverse=1.0, roll=0.0, mask=0.0, mixup=0.0), rng)
    torch.testing.assert_close(permuted[1], frames[1].flip(0))  # a full-length row reversed
    torch.testing.assert_close(permuted[0, :2], frames[0, :2].flip(0))
