"""Validated configurations of the content-based models: the tag model and the content model.

Training configs are read from `--config` YAML by `recommenders train tags|content` (through
`config.load_config`); serving parameters come from the experiment's `params`. Defaults are
small enough to train on a laptop CPU in a minute or two; the write-ups' values (3 layers,
8 heads, crop 120, batch 512) are one YAML file away. Unknown keys are errors.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from contracts.config import Strict
from recommenders.models.config import CandidateServing
from recommenders.models.selection import DEFAULT_CAP, DEFAULT_MARGIN, DEFAULT_THRESHOLDS, check_thresholds


class EncoderConfig(Strict):
    """Width and depth of the frame-sequence transformer (the tag write-up: 3 layers, 4 or 8 heads)."""

    d_model: int = Field(64, ge=4, le=4096)
    heads: int = Field(4, ge=1, le=64)
    layers: int = Field(2, ge=1, le=24)
    feedforward: int = Field(128, ge=4, le=16384)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_heads(self) -> EncoderConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model == {self.d_model}, must be divisible by heads == {self.heads}")
        return self


class AugmentConfig(Strict):
    """Per-row probabilities of the training augmentations of the tag write-up (0 turns one off)."""

    reverse: float = Field(0.3, ge=0.0, le=1.0)  # play the frames backwards
    roll: float = Field(0.5, ge=0.0, le=1.0)  # rotate the frames by a random shift (torch.roll per row)
    mask: float = Field(0.5, ge=0.0, le=1.0)  # zero some frames of the row ...
    mask_fraction: float = Field(0.15, ge=0.0, lt=1.0)  # ... each with this probability
    mixup: float = Field(0.3, ge=0.0, le=1.0)  # blend the row (frames and targets) with another row of the batch
    mixup_alpha: float = Field(0.4, gt=0.0)  # Beta(alpha, alpha) weight of the blend


class FrameTrainingConfig(Strict):
    """What both frame models share: seed, optimiser, schedule, mixed precision, crop."""

    seed: int = Field(0, ge=0)
    epochs: int = Field(12, ge=1, le=10_000)
    batch_size: int = Field(256, ge=2, le=65_536)
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    min_lr: float = Field(1e-6, ge=0.0)  # floor of the cosine schedule
    weight_decay: float = Field(0.01, ge=0.0)
    clip_norm: float = Field(1.0, ge=0.0)  # gradient-norm clipping; 0 turns it off
    amp: bool = True  # float16 autocast with loss scaling on CUDA (ignored on the CPU)
    max_crop: int = Field(24, ge=1)  # training crop length in frames (a random window of longer tracks)
    encoder: EncoderConfig = EncoderConfig()
    augment: AugmentConfig = AugmentConfig()
    inference_batch_size: int = Field(1024, ge=1)
    threads: int = Field(1, ge=1)  # torch CPU threads of training: the weights depend on it, not on the machine

    @model_validator(mode="after")
    def _check_schedule(self) -> FrameTrainingConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr == {self.min_lr}, must be <= lr == {self.lr}")
        return self


class TagModelConfig(FrameTrainingConfig):
    """Training config of the tag model (`recommenders train tags`)."""

    head_hidden: int = Field(256, ge=1)
    head_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    class_weights: Literal["inverse_frequency", "none"] = "inverse_frequency"  # weighted BCE, 1 / tag frequency
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    max_train_tracks: int | None = Field(None, ge=1)  # cap on training tracks, for quick runs
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS  # the dynamic-threshold grid

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return check_thresholds(value)


class ContentModelConfig(FrameTrainingConfig):
    """Training config of the contrastive content model (`recommenders train content`)."""

    batch_size: int = Field(256, ge=2, le=65_536)  # InfoNCE wants large batches: more in-batch negatives
    epochs: int = Field(60, ge=1, le=10_000)
    like_threshold: float = Field(0.5, ge=0.0, le=1.0)  # a listen of at least this fraction is a like
    behaviour: Literal["colisten", "dssm", "bpr_knn"] = "colisten"  # where the behaviour vectors come from
    behaviour_artifact: str | None = None  # artifact directory of the trained dssm / bpr_knn model
    behaviour_dim: int = Field(32, ge=2, le=1024)  # SVD dimension of the co-listening vectors
    min_likes: int = Field(2, ge=1)  # a track needs this many likers to have a behaviour vector
    embedding: int = Field(32, ge=2, le=1024)  # dimension of the shared space
    hidden: int = Field(128, ge=1)  # behaviour tower's hidden layer
    temperature: float = Field(0.1, gt=0.0, le=1.0)  # initial InfoNCE temperature (learned)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # warm tracks held out of training, for Recall@K / F2
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # warm tracks held out for early stopping (never the test ones)
    content_lr_scale: float = Field(0.1, ge=0.0, le=1.0)  # the content tower's learning rate is lr times this
    colisten_weight: float = Field(1.0, ge=0.0)  # weight of the content-to-content InfoNCE over co-liked pairs (0: off)
    patience: int = Field(10, ge=1)  # stop after this many epochs without a better validation Recall@10; keep the best
    margin: float = Field(DEFAULT_MARGIN, ge=0.0, lt=1.0)  # dynamic selection: keep similarity >= best * (1 - margin)
    cap: int = Field(DEFAULT_CAP, ge=1)  # most tracks the dynamic selection keeps
    relevant: int = Field(20, ge=1)  # ground truth per held-out track: its top co-listened tracks

    @model_validator(mode="after")
    def _check_behaviour(self) -> ContentModelConfig:
        if self.behaviour != "colisten" and self.behaviour_artifact is None:
            raise ValueError(f"behaviour == {self.behaviour!r} needs behaviour_artifact (the trained model's directory)")
        return self


class FrameServing(CandidateServing):
    """Serving parameters of `content` (the treatment's `params`); `tags` adds `predicted`."""

    like_threshold: float = Field(0.5, ge=0.0, le=1.0)  # session tracks listened at least this much form the query
    history: int = Field(10, ge=1, le=256)  # most recent session tracks looked at
    new_only: bool = False  # recommend only tracks released after day 0 (the cold-start treatments)


class TagServing(FrameServing):
    """Serving parameters of `tags`."""

    predicted: bool = True  # fill unlabelled tracks with predicted tags (False: observed tags only)
    candidates: Literal["exact", "ivf"] = "exact"  # tag profiles tie often: exact keeps their jittered order
