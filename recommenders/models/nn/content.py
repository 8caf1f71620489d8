"""Training of the content model: a contrastive two-tower that maps content to behaviour.

The content tower encodes a track's frames (a linear map of the mean frame, starting as the
identity, plus a transformer residual starting at zero; see `frames.TwoTower`), the
behaviour tower a track's behaviour vector (co-listening SVD of the log, or the item
embedding of a trained DSSM / BPR model); both end on the unit sphere. Training pairs every
warm track's two views with the symmetric InfoNCE loss over in-batch negatives (the
retrieval write-up: large batches give more hard negatives), and, weighted by
`colisten_weight`, a track's content with the content of a track it was co-liked with.

The warm tracks are split three ways: training, validation (early stopping: the weights of
the best epoch are kept, epoch 0 being the untrained tower, which ranks like the mean
frames) and test. Validation also chooses the query side that serving uses for warm
tracks: their behaviour embedding or their content embedding, whichever retrieves the
co-liked tracks better. Evaluation: each test track's content embedding queries every other
warm track, and the truth is the tracks it was most co-liked with (by PPMI). Reported:
Recall@10/50 and F2 of the margin-based dynamic selection, for content against behaviour
embeddings, content against content embeddings, and the no-training baseline (cosine of
mean frames), all on the same test tracks and truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from contracts.catalog import Catalog
from recommenders.evaluation.content import f2_scores, recall_at_k
from recommenders.models.colisten import CoListening, co_listened_neighbours
from recommenders.models.content_config import ContentModelConfig
from recommenders.models.frame_store import FrameStore, length_bucketed_batches
from recommenders.models.nn import TrainingError
from recommenders.models.nn import augment as aug
from recommenders.models.nn.amp import Stepper, autocast, encode_store, flush_denormals, seed_everything
from recommenders.models.nn.encoders import TwoTower, info_nce
from recommenders.models.nn.training import EarlyStopping, cpu_threads, fit_epochs, resolve_device, to_numpy
from recommenders.models.selection import margin_select
from recommenders.models.space import normalise_rows

logger = logging.getLogger(__name__)

MIN_WARM = 16
RECALL_KS = (10, 50)


@dataclass
class TrainedContent:
    """What training produces: weights, every track's content embedding, the warm tracks'
    behaviour embeddings, the held-out tracks, metrics and history."""

    weights: dict[str, np.ndarray]
    items: np.ndarray  # (n_tracks, embedding) content-tower outputs, unit rows
    warm: np.ndarray  # (m,) catalog ids with a behaviour vector
    behaviour: np.ndarray  # (m, embedding) behaviour-tower outputs of `warm`, unit rows
    test: np.ndarray  # catalog ids of the held-out warm tracks
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def build_net(frame_dim: int, behaviour_dim: int, config: ContentModelConfig) -> TwoTower:
    """A fresh `TwoTower` shaped by `config`."""
    return TwoTower(frame_dim, behaviour_dim, config.encoder, config.embedding, config.hidden, config.temperature)


def retrieval_metrics(
    queries: np.ndarray, candidates: np.ndarray, candidate_ids: np.ndarray, query_ids: np.ndarray, relevant: list[np.ndarray], config: ContentModelConfig
) -> dict[str, float]:
    """Recall@K and margin-selection F2 of cosine retrieval (queries x candidates, unit rows).

    A query never retrieves itself; `relevant` holds candidate ids per query.
    """
    similarity = queries @ candidates.T
    similarity[query_ids[:, None] == candidate_ids[None, :]] = -np.inf
    order = np.argsort(-similarity, axis=1, kind="stable")[:, : max(RECALL_KS)]
    ranked = candidate_ids[order]
    finite = np.where(np.isfinite(similarity), similarity, -1.0)
    selected = [candidate_ids[row] for row in margin_select(finite, config.margin, config.cap)]
    f2 = f2_scores(selected, relevant)
    result = {f"recall@{k}": recall_at_k(ranked, relevant, k) for k in RECALL_KS}
    result.update(f2=f2.f2, precision=f2.precision, recall=f2.recall, selected=f2.selected)
    return result


def co_listened_partners(pairs: sp.csr_matrix, batch: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `batch` (indices into the square co-like matrix `pairs`) that shares a
    liker with another row, one such row drawn at random: (positions in `batch`, partner rows)."""
    counts = np.diff(pairs.indptr)[batch]
    anchors = np.flatnonzero(counts > 0)
    picks = pairs.indptr[batch[anchors]] + (rng.random(len(anchors)) * counts[anchors]).astype(np.int64)
    return anchors, pairs.indices[picks].astype(np.int64)


@torch.no_grad()
def validation_recall(
    net: TwoTower,
    store: FrameStore,
    features: torch.Tensor,
    val_rows: np.ndarray,
    known_rows: np.ndarray,
    warm: np.ndarray,
    relevant: list[np.ndarray],
    device: torch.device,
    config: ContentModelConfig,
) -> tuple[float, float]:
    """Recall@10 of the validation tracks' content against the behaviour, and against the
    content, of the non-test warm tracks: what early stopping and the choice of the served
    query side look at (the test tracks stay unseen until the end)."""
    was_training = net.training
    net.eval()
    queries = encode_store(store.subset(val_rows), net.content, device, config.inference_batch_size, amp=config.amp)
    candidates = net.behaviour(features[torch.from_numpy(known_rows).to(device)]).float().cpu().numpy()
    contents = normalise_rows(encode_store(store.subset(known_rows), net.content, device, config.inference_batch_size, amp=config.amp))
    net.train(was_training)
    queries = normalise_rows(queries)
    to_behaviour = retrieval_metrics(queries, candidates, warm[known_rows], warm[val_rows], relevant, config)
    to_content = retrieval_metrics(queries, contents, warm[known_rows], warm[val_rows], relevant, config)
    return float(to_behaviour["recall@10"]), float(to_content["recall@10"])


def train_content(
    catalog: Catalog,
    colisten: CoListening,
    warm_rows: np.ndarray,
    behaviour: np.ndarray,
    config: ContentModelConfig,
    device: str = "cpu",
    progress: bool = False,
) -> TrainedContent:
    """Train the two towers on the warm tracks `colisten.tracks[warm_rows]` with behaviour vectors `behaviour`.

    Raises `TrainingError` when there are too few warm tracks or the device is unavailable.
    """
    target = resolve_device(device)
    if len(warm_rows) < MIN_WARM:
        raise TrainingError(
            f"only {len(warm_rows)} tracks were liked by at least {config.min_likes} listeners; "
            f"the content model needs {MIN_WARM}: simulate more traffic or lower min_likes"
        )
    with cpu_threads(config.threads), flush_denormals():
        return _train(catalog, colisten, warm_rows, behaviour, config, target, progress)


def _train(
    catalog: Catalog, colisten: CoListening, warm_rows: np.ndarray, behaviour: np.ndarray, config: ContentModelConfig, target: torch.device, progress: bool
) -> TrainedContent:
    rng = seed_everything(config.seed)
    warm = colisten.tracks[warm_rows]
    store = FrameStore.from_catalog(catalog, warm)
    order = rng.permutation(len(warm))
    n_test = max(2, int(round(len(warm) * config.test_fraction)))
    n_val = max(2, int(round(len(warm) * config.val_fraction)))
    test_rows, val_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test : n_test + n_val]), np.sort(order[n_test + n_val :])
    known_rows = np.sort(order[n_test:])  # what early stopping may look at: never a test track
    val_relevant = [colisten.tracks[r] for r in co_listened_neighbours(colisten, warm_rows[val_rows], warm_rows[known_rows], top=config.relevant, min_count=1)]
    features = torch.as_tensor(behaviour.astype(np.float32), device=target)

    net = build_net(store.frame_dim, behaviour.shape[1], config).to(target)
    content_parameters = [*net.linear.parameters(), *net.encoder.parameters(), *net.content_head.parameters()]
    content_ids = {id(p) for p in content_parameters}
    groups = [
        {"params": content_parameters, "lr": config.lr * config.content_lr_scale},
        {"params": [p for p in net.parameters() if id(p) not in content_ids], "lr": config.lr},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(train_rows))
    steps_per_epoch = -(-len(train_rows) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch, eta_min=config.min_lr)
    stepper = Stepper(net, optimizer, target, config.amp, config.clip_norm)
    no_mixup = config.augment.model_copy(update={"mixup": 0.0})
    train_lengths = store.lengths[train_rows]
    train_pairs = colisten.counts[warm_rows[train_rows]][:, warm_rows[train_rows]].tocsr()

    def train_epoch(bar: tqdm) -> float:
        total, seen = 0.0, 0
        for batch in length_bucketed_batches(np.minimum(train_lengths, config.max_crop), batch_size, rng):
            if len(batch) < 2:  # InfoNCE needs a negative
                continue
            rows = train_rows[batch]
            frames_np, lengths_np = store.batch(rows, config.max_crop, rng)
            frames = torch.from_numpy(frames_np).to(target)
            frames = aug.mask_frames(aug.permute_frames(frames, lengths_np, no_mixup, rng), lengths_np, no_mixup, rng)
            with autocast(target, config.amp):
                content = net.content(frames, torch.from_numpy(lengths_np).to(target))
                behaviour_out = net.behaviour(features[torch.from_numpy(rows).to(target)])
            loss = info_nce(content, behaviour_out, net.logit_scale)
            anchors, partners = co_listened_partners(train_pairs, batch, rng)
            if config.colisten_weight > 0 and len(anchors) >= 2:
                partner_np, partner_lengths = store.batch(train_rows[partners], config.max_crop, rng)
                partner_frames = torch.from_numpy(partner_np).to(target)
                partner_frames = aug.mask_frames(aug.permute_frames(partner_frames, partner_lengths, no_mixup, rng), partner_lengths, no_mixup, rng)
                with autocast(target, config.amp):
                    partner = net.content(partner_frames, torch.from_numpy(partner_lengths).to(target))
                loss = loss + config.colisten_weight * info_nce(content[torch.from_numpy(anchors).to(target)], partner, net.logit_scale)
            if stepper.step(loss):
                schedule.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
            bar.update(1)
            bar.set_postfix(loss=f"{total / max(seen, 1):.4f}")
        return total / max(seen, 1)

    def validate() -> dict[str, float]:
        to_behaviour, to_content = validation_recall(net, store, features, val_rows, known_rows, warm, val_relevant, target, config)
        # The better of the two query sides is the one serving will use.
        return {"val_recall@10": max(to_behaviour, to_content), "val_recall@10_behaviour": to_behaviour, "val_recall@10_content": to_content}

    fitted = fit_epochs(
        net, train_epoch, validate, EarlyStopping("val_recall@10", "max", patience=config.patience),
        epochs=config.epochs, steps=steps_per_epoch, name="content", device=target, optimizer=optimizer, progress=progress,
        validate_untrained=True,
    )
    history, best_epoch = fitted.history, fitted.best_epoch
    best_score = fitted.best["val_recall@10"]
    best_scores = (fitted.best["val_recall@10_behaviour"], fitted.best["val_recall@10_content"])
    net.eval()
    with torch.no_grad():
        behaviour_embeddings = net.behaviour(features).float().cpu().numpy()
    items = encode_store(FrameStore.from_catalog(catalog), net.content, target, config.inference_batch_size, amp=config.amp)
    items = normalise_rows(items)

    relevant = co_listened_neighbours(colisten, warm_rows[test_rows], warm_rows, top=config.relevant, min_count=1)
    relevant_ids = [colisten.tracks[r] for r in relevant]
    test_ids = warm[test_rows]
    query = "behaviour" if best_scores[0] >= best_scores[1] else "content"
    model = retrieval_metrics(items[test_ids], behaviour_embeddings, warm, test_ids, relevant_ids, config)
    content_to_content = retrieval_metrics(items[test_ids], items[warm], warm, test_ids, relevant_ids, config)
    mean_frames = normalise_rows(store.mean_frames())  # the warm tracks' frames, read once above
    baseline = retrieval_metrics(mean_frames[test_rows], mean_frames, warm, test_ids, relevant_ids, config)
    metrics = {
        **{f"test_{k}": v for k, v in model.items()},
        **{f"content_only_{k}": v for k, v in content_to_content.items()},
        **{f"baseline_{k}": v for k, v in baseline.items()},
        "chance_recall@10": 10 / max(len(warm) - 1, 1),
        "test_tracks": int(len(test_ids)),
        "test_tracks_with_truth": int(sum(len(r) > 0 for r in relevant)),
        "warm_tracks": int(len(warm)),
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "best_epoch": best_epoch,
        "val_recall@10": best_score,  # of the kept weights (epoch 0: the untrained tower)
        "query": query,
        "val_tracks": int(len(val_rows)),
        "device": str(target),
    }
    net.to("cpu")
    return TrainedContent(to_numpy(net), items, warm, behaviour_embeddings, test_ids, metrics, history)
