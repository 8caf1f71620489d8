"""The candidate stage of the learned models: an inverted file over the catalog's item vectors.

Exact serving scores every catalog track per request: one (B, D) x (D, N) product per batch,
which grows with the catalog. The models whose score is an inner product between a request's
query vector and a track's item vector (`dssm`, `bpr_knn`, `content`) can instead scan a part of
the catalog: an inverted file (IVF; Sivic and Zisserman 2003, "Video Google", and the coarse
quantizer of Jégou, Douze and Schmid 2011, "Product quantization for nearest neighbor search",
IEEE TPAMI 33(1), section IV-A) splits the item vectors into `n_lists` k-means cells; a batch of
queries scores the cells' centroids and scans the `n_probe` best cells of each query exactly,
with one matrix product per cell. The model then applies its serving rules (no repeats, no
unreleased track, its penalties and boosts) to the scanned tracks and answers the best one.

Scanning every cell (`n_probe >= n_lists`) scores every track, so the answers are those of
exact scoring. The index is built when a model is loaded or fitted, from a fixed seed: the same
artifact gives the same cells and the same answers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

KMEANS_ITERATIONS = 10  # Lloyd iterations; the cells only steer the scan, the scores stay exact
KMEANS_SAMPLE = 64  # training points per cell at most (faiss's k-means uses 39 to 256)
KMEANS_SEED = 0
ASSIGN_CHUNK = 8192  # items assigned to cells at once: bounds memory at ASSIGN_CHUNK x n_lists floats
BALANCE = 1.25  # a cell holds at most this times the mean cell size: a scan's width is the largest cell
CHOICES = 16  # nearest cells an item may be placed in before it goes to the emptiest one


def default_lists(n_items: int) -> int:
    """Number of cells when the model does not say: about the square root of the catalog size."""
    return max(1, int(round(np.sqrt(n_items))))


def balanced_cells(points: np.ndarray, centroids: np.ndarray, capacity: int) -> np.ndarray:
    """(n,) cell of every point: its nearest cell that still has room, at most `capacity` points per cell.

    Rounds of proposals: in round r every unplaced point proposes its r-th nearest cell, and each
    cell takes its closest proposers while it has room (a capacity-constrained k-means assignment;
    the rare point refused by its `CHOICES` nearest cells goes to the emptiest cell).
    """
    n, n_cells = len(points), len(centroids)
    norms = (centroids * centroids).sum(axis=1)
    choices = np.empty((n, min(CHOICES, n_cells)), dtype=np.int64)
    distances = np.empty(choices.shape, dtype=np.float32)
    for start in range(0, n, ASSIGN_CHUNK):
        block = norms[None, :] - 2.0 * (points[start : start + ASSIGN_CHUNK] @ centroids.T)
        nearest = np.argpartition(block, choices.shape[1] - 1, axis=1)[:, : choices.shape[1]] if choices.shape[1] < n_cells else np.tile(np.arange(n_cells), (len(block), 1))
        nearest = np.take_along_axis(nearest, np.argsort(np.take_along_axis(block, nearest, axis=1), axis=1, kind="stable"), axis=1)
        choices[start : start + len(block)] = nearest
        distances[start : start + len(block)] = np.take_along_axis(block, nearest, axis=1)
    cell_of = np.full(n, -1, dtype=np.int64)
    room = np.full(n_cells, capacity, dtype=np.int64)
    for r in range(choices.shape[1]):
        open_points = np.flatnonzero(cell_of < 0)
        if not len(open_points):
            break
        wanted, distance = choices[open_points, r], distances[open_points, r]
        order = np.lexsort((open_points, distance, wanted))  # by cell, closest first
        wanted_sorted = wanted[order]
        first = np.searchsorted(wanted_sorted, wanted_sorted, side="left")
        rank = np.arange(len(order)) - first
        taken = rank < room[wanted_sorted]
        cell_of[open_points[order[taken]]] = wanted_sorted[taken]
        room -= np.bincount(wanted_sorted[taken], minlength=n_cells)
    for point in np.flatnonzero(cell_of < 0):
        cell = int(np.argmax(room))
        cell_of[point] = cell
        room[cell] -= 1
    return cell_of


def _nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n,) index of the nearest centroid (squared L2) of every point, ties to the lower index."""
    out = np.empty(len(points), dtype=np.int64)
    norms = (centroids * centroids).sum(axis=1)
    for start in range(0, len(points), ASSIGN_CHUNK):
        block = points[start : start + ASSIGN_CHUNK]
        out[start : start + len(block)] = np.argmin(norms[None, :] - 2.0 * (block @ centroids.T), axis=1)
    return out


def euclidean_transform(items: np.ndarray) -> np.ndarray:
    """(N, D + 1) items with the coordinate sqrt(M^2 - |x|^2) appended, M the largest norm.

    Every transformed item has norm M, so for a query q extended by 0 the largest inner product
    is the nearest item in L2 (Bachrach et al. 2014, "Speeding up the Xbox recommender system
    using a Euclidean transformation for inner-product spaces", RecSys): k-means cells of the
    transformed items group what a query scores alike, whatever the norms.
    """
    squared = (items.astype(np.float64) ** 2).sum(axis=1)
    extra = np.sqrt(np.maximum(squared.max() - squared, 0.0))
    return np.hstack([items, extra[:, None]]).astype(np.float32)


def kmeans(points: np.ndarray, n_clusters: int, rng: np.random.Generator, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """(n_clusters, D) centroids by Lloyd's algorithm from `n_clusters` distinct points drawn by `rng`.

    A cell that loses all its points keeps its centroid (it stays empty or wins points back).
    """
    centroids = points[rng.choice(len(points), size=n_clusters, replace=False)].astype(np.float64)
    for _ in range(iterations):
        cells = _nearest(points, centroids.astype(np.float32))
        counts = np.bincount(cells, minlength=n_clusters)
        sums = np.zeros_like(centroids)
        np.add.at(sums, cells, points)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids.astype(np.float32)


class Workspace(threading.local):
    """Per-thread float32 arrays that a server reuses from batch to batch.

    A scan's score matrix is large (requests x scanned tracks); allocating a fresh one per batch
    makes the kernel hand over and zero new pages every time, which costs more than filling it.
    Each thread has its own arrays, so threads serving at once never share one.
    """

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of `shape` (uninitialised) backed by this thread's buffer `name`, grown when too small.

        The array is valid until the next call with the same name on the same thread.
        """
        size = int(np.prod(shape))
        held: np.ndarray | None = self.__dict__.get(name)
        if held is None or held.size < size:
            held = np.empty(size, dtype=np.float32)
            self.__dict__[name] = held
        return held[:size].reshape(shape)


@dataclass(frozen=True)
class Scan:
    """The tracks a batch of queries scanned, and their inner products with the queries.

    Column `j * width + i` of a row holds the i-th track of the row's j-th scanned cell.

    Attributes:
        scores: (B, P * width + extra) float32 query . item of each scanned track, -inf in padding
            and in the `extra` columns the caller asked for.
        cells: (B, P) the cells each query scanned.
        width: columns per scanned cell (the largest cell's size).
        columns: (B, n_lists) the column where each cell begins, -1 where the row did not scan it.
    """

    scores: np.ndarray
    cells: np.ndarray
    width: int
    columns: np.ndarray


class InvertedFile:
    """IVF index over `items` (N, D) for maximum inner product search (see the module docstring).

    Track ids are the row numbers of `items` (external catalog ids). Each track sits in one cell;
    the vectors of a cell are stored together, transposed, so scanning a cell is one matrix product.
    """

    def __init__(self, items: np.ndarray, n_lists: int, seed: int = KMEANS_SEED) -> None:
        items = np.ascontiguousarray(items, dtype=np.float32)
        if items.ndim != 2 or not len(items):
            raise ValueError(f"items must be a non-empty (N, D) matrix, got shape {items.shape}")
        if n_lists < 1:
            raise ValueError(f"n_lists == {n_lists}, must be >= 1")
        n_lists = min(n_lists, len(items))
        rng = np.random.default_rng(seed)
        points = euclidean_transform(items)
        sample = points if len(points) <= n_lists * KMEANS_SAMPLE else points[np.sort(rng.choice(len(points), n_lists * KMEANS_SAMPLE, replace=False))]
        centroids = kmeans(sample, n_lists, rng) if n_lists > 1 else points.mean(axis=0, keepdims=True)
        capacity = int(np.ceil(BALANCE * len(items) / n_lists))
        cell_of = balanced_cells(points, centroids, capacity) if n_lists > 1 else np.zeros(len(items), dtype=np.int64)
        self.centroids = np.ascontiguousarray(centroids[:, :-1])  # a query's extra coordinate is 0
        order = np.argsort(cell_of, kind="stable")
        self.n_lists = n_lists
        self.offsets = np.searchsorted(cell_of[order], np.arange(n_lists + 1)).astype(np.int64)
        self.sizes = np.diff(self.offsets)
        self.tracks = order.astype(np.int64)  # tracks of cell c: tracks[offsets[c]:offsets[c + 1]]
        vectors = items[order]
        # Each cell's vectors transposed, (D, size): the layout the products below run fastest on, a quarter or more.
        self.cell_vectors = [np.ascontiguousarray(vectors[self.offsets[cell] : self.offsets[cell + 1]].T) for cell in range(n_lists)]
        self.cell_of = cell_of
        self.position = np.empty(len(items), dtype=np.int64)  # each track's place within its cell
        self.position[order] = np.arange(len(items)) - self.offsets[cell_of[order]]

    def label(self, labels: np.ndarray) -> None:
        """Group each cell's tracks by `labels` ((N,) non-negative ints, e.g. artists), for `best`'s rules on whole labels."""
        labels = np.asarray(labels, dtype=np.int64)
        order = np.lexsort((self.position, self.cell_of, labels))  # by label, then cell, then place in the cell
        block_key = labels[order] * self.n_lists + self.cell_of[order]
        opens = np.flatnonzero(np.concatenate([[True], block_key[1:] != block_key[:-1]]))
        self._label_tracks = order.astype(np.int64)
        self._block_start = np.append(opens, len(order)).astype(np.int64)  # block b: _label_tracks[_block_start[b]:_block_start[b + 1]]
        self._block_cell = self.cell_of[order[opens]]
        self._label_blocks = np.searchsorted(labels[order[opens]], np.arange(int(labels.max()) + 2)).astype(np.int64)

    def _labelled(self, probe_of: np.ndarray, rows: np.ndarray, labels: np.ndarray, amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, tracks, amounts): each (row, label, amount) rule spelled out over the label's tracks in the row's scanned cells."""
        first = self._label_blocks[labels]
        counts = self._label_blocks[labels + 1] - first
        pairs = np.repeat(np.arange(len(rows)), counts)
        blocks = np.repeat(first - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        scanned = probe_of[rows[pairs], self._block_cell[blocks]] >= 0
        pairs, blocks = pairs[scanned], blocks[scanned]
        starts = self._block_start[blocks]
        sizes = self._block_start[blocks + 1] - starts
        tracks = self._label_tracks[np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))]
        return np.repeat(rows[pairs], sizes), tracks, np.repeat(amounts[pairs], sizes)

    def _cells(self, queries: np.ndarray, n_probe: int) -> np.ndarray:
        """(B, n_probe) the cells whose centroids have the highest inner product with each query, in probe order."""
        if n_probe == self.n_lists:
            return np.tile(np.arange(self.n_lists), (len(queries), 1))
        return np.argpartition(-(queries @ self.centroids.T), n_probe - 1, axis=1)[:, :n_probe]

    def scan(self, queries: np.ndarray, n_probe: int, extra: int = 0, workspace: Workspace | None = None) -> Scan:
        """Score every track of the `n_probe` cells whose centroids have the highest inner product with each query.

        `extra` more columns (-inf) follow the scanned ones in `scores`, for the caller's own
        candidates. With a `workspace`, `scores` lives in its buffer "scan" (valid until the next
        scan with that workspace on this thread) instead of a new array.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        batch = len(queries)
        n_probe = min(n_probe, self.n_lists)
        cells = self._cells(queries, n_probe)
        width = int(self.sizes.max())
        columns = np.full((batch, self.n_lists), -1, dtype=np.int64)
        np.put_along_axis(columns, cells, np.arange(n_probe) * width, axis=1)
        shape = (batch, n_probe * width + extra)
        buffer = np.empty(shape, dtype=np.float32) if workspace is None else workspace.array("scan", shape)
        buffer[:, n_probe * width :] = -np.inf  # every scanned column is written below, padding included
        scores = buffer[:, : n_probe * width].reshape(batch, n_probe, width)  # a view: rows copy into the buffer
        flat = cells.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.flatnonzero(np.diff(flat[order])) + 1
        for group in np.split(order, bounds):  # one matrix product per scanned cell, copied row by row
            cell = int(flat[group[0]])
            first, last = self.offsets[cell], self.offsets[cell + 1]
            rows = group // n_probe
            scores[rows, group % n_probe, : last - first] = queries[rows] @ self.cell_vectors[cell]
            if last - first < width:
                scores[rows, group % n_probe, last - first :] = -np.inf
        return Scan(buffer, cells, width, columns)

    def best(
        self,
        queries: np.ndarray,
        n_probe: int,
        rows: np.ndarray,
        tracks: np.ndarray,
        amounts: np.ndarray,
        release: np.ndarray,
        days: np.ndarray,
        labelled: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B,) float32 each query's highest score among the tracks of its `n_probe` best cells after the
        serving rules, and (B,) int64 that track (-1 where every scanned track is -inf).

        The rules: `amounts` subtracted from the scores of the (row, track) pairs (of a pair listed
        twice, the last amount counts), and -inf for the tracks whose `release` day is after the
        row's `days` (a negative day: every track is out). `labelled` (rows, labels, amounts) lowers
        every track of a label (`label`) for a row, as pairs listed before `rows`' would: only
        the label's tracks in the row's scanned cells are spelled out. The answer is the best column of `scan`
        after the same rules, ties included (the earlier probed cell, then the earlier place in it),
        but each cell's product is reduced to its best track while it is small: the (B, scanned
        tracks) score matrix is never written.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        batch = len(queries)
        n_probe = min(n_probe, self.n_lists)
        cells = self._cells(queries, n_probe)
        flat = cells.ravel()  # (row, probe) slot row * n_probe + probe scans cell flat[slot]
        order = np.argsort(flat, kind="stable")  # slots by cell, each cell's by row
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat[order])) + 1, [len(order)]])
        place_of = np.empty(len(order), dtype=np.int64)
        place_of[order] = np.arange(len(order))
        probe_of = np.full((batch, self.n_lists), -1, dtype=np.int64)
        np.put_along_axis(probe_of, cells, np.arange(n_probe), axis=1)
        if labelled is not None and len(labelled[0]):
            spelled = self._labelled(probe_of, *labelled)
            rows, tracks = np.concatenate([spelled[0], rows]), np.concatenate([spelled[1], tracks])
            amounts = np.concatenate([spelled[2], amounts]).astype(np.float32, copy=False)
        hit_cells = self.cell_of[tracks]
        probes = probe_of[rows, hit_cells]
        inside = np.flatnonzero(probes >= 0)  # rules on tracks the row did not scan change nothing here
        # By cell, stably: a pair listed twice keeps its order. 16-bit keys sort by radix.
        by_cell = inside[np.argsort(hit_cells[inside].astype(np.uint16 if self.n_lists <= 1 << 16 else np.int64), kind="stable")]
        hit_place = place_of[rows[by_cell] * n_probe + probes[by_cell]]  # the row's place among its cell's rows, plus the cell's start
        hit_position, hit_amount = self.position[tracks[by_cell]], amounts[by_cell]
        hit_bounds = np.searchsorted(hit_cells[by_cell], flat[order[bounds[:-1]]])
        hit_bounds = np.append(hit_bounds, len(by_cell))
        late_days = np.where(days >= 0, days, np.iinfo(np.int64).max) if np.any(days >= 0) else None
        value_at = np.full(len(order), -np.inf, dtype=np.float32)  # by place in `order`
        place_at = np.zeros(len(order), dtype=np.int64)
        for group in range(len(bounds) - 1):
            start, stop = bounds[group], bounds[group + 1]
            cell = int(flat[order[start]])
            first, last = self.offsets[cell], self.offsets[cell + 1]
            if first == last:
                continue
            group_rows = order[start:stop] // n_probe
            scores = queries[group_rows] @ self.cell_vectors[cell]  # the product `scan` makes: the same values
            if late_days is not None:
                scores[release[self.tracks[first:last]][None, :] > late_days[group_rows][:, None]] = -np.inf
            low, high = hit_bounds[group], hit_bounds[group + 1]
            if high > low:
                scores[hit_place[low:high] - start, hit_position[low:high]] -= hit_amount[low:high]
            places = np.argmax(scores, axis=1)
            place_at[start:stop] = places
            value_at[start:stop] = scores.ravel()[places + np.arange(len(places)) * scores.shape[1]]
        best_value = np.empty(len(order), dtype=np.float32)
        best_value[order] = value_at
        best_place = np.empty(len(order), dtype=np.int64)
        best_place[order] = place_at
        everyone = np.arange(batch)
        probe = np.argmax(best_value.reshape(batch, n_probe), axis=1)
        slot = everyone * n_probe + probe
        value = best_value[slot]
        track = self.tracks[np.minimum(self.offsets[flat[slot]] + best_place[slot], len(self.tracks) - 1)]
        return value, np.where(np.isfinite(value), track, -1)

    def locate(self, scan: Scan, rows: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """Column of each (row, track) pair in `scan`, -1 where the row did not scan the track's cell."""
        start = scan.columns[rows, self.cell_of[tracks]]
        return np.where(start >= 0, start + self.position[tracks], -1)

    def tracks_at(self, scan: Scan, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """External track id at each (row, column) of `scan` (columns that hold a track, not padding)."""
        cells = scan.cells[rows, columns // scan.width]
        return self.tracks[self.offsets[cells] + columns % scan.width]

    def scanned_tracks(self, scan: Scan, rows: np.ndarray) -> np.ndarray:
        """(len(rows), P * width + extra) external track ids of the scan's columns for `rows`, -1 in padding."""
        cells = scan.cells[rows]
        slots = np.arange(scan.width)
        inside = slots[None, None, :] < self.sizes[cells][:, :, None]
        places = np.minimum(self.offsets[cells][:, :, None] + slots[None, None, :], len(self.tracks) - 1)
        tracks = np.where(inside, self.tracks[places], -1).reshape(len(rows), -1)
        out = np.full((len(rows), scan.scores.shape[1]), -1, dtype=np.int64)
        out[:, : tracks.shape[1]] = tracks
        return out
