"""An int8 dense layer for serving: `x @ W.T + b` with 8-bit weights and activations, summed in int32.

The weights are quantised once, symmetrically per output channel (`W ~ s_w[j] q_w[j, :]`); each
batch's activations are quantised per row (`x ~ s_x[i] q_x[i, :]`, the row's largest magnitude
mapped to 127), so one request's scale never depends on the others in its batch. The integer
product is exact (int32 accumulation, `torch._int_mm`), then scaled back to float32:
`y[i, j] = s_x[i] s_w[j] (q_x q_w^T)[i, j] + b[j]`. This is the dynamic quantisation of
Jacob et al. 2018 ("Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR) with per-row activation scales;
`torch.ao.quantization.quantize_dynamic` scales the whole batch by one number instead, which
changed 9% of the demo DSSM's answers where per-row scales change under 2% (docs/learned.md).

Answers differ from float32 serving: the layer is an opt-in serving parameter, never a default.
"""

from __future__ import annotations

import numpy as np

from recommenders.models.nn import require_torch

QMAX = 127  # symmetric int8 range [-127, 127]


class Int8Linear:
    """`x @ weight.T + bias` in int8 (module docstring); `weight` (out, in), `bias` (out,), float32.

    Needs torch at construction (the `ml` extra). Results are deterministic: the integer sums are exact.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        torch = require_torch()
        if not hasattr(torch, "_int_mm"):
            raise RuntimeError(f"int8 serving needs torch._int_mm, which torch {torch.__version__} lacks; serve in float32")
        weight = np.asarray(weight, dtype=np.float32)
        scale = np.maximum(np.abs(weight).max(axis=1), np.finfo(np.float32).tiny) / np.float32(QMAX)
        quantised = np.rint(weight / scale[:, None]).astype(np.int8)
        self._weight = torch.from_numpy(np.ascontiguousarray(quantised.T))  # (in, out), the layout _int_mm takes
        self._weight_scale = torch.from_numpy(scale.astype(np.float32))
        self._bias = torch.from_numpy(np.asarray(bias, dtype=np.float32))
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, in) float32 -> (B, out) float32."""
        import torch

        from recommenders.models.nn.training import cpu_threads

        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"input must have shape (B, {self.in_features}), got {x.shape}")
        scale = np.maximum(np.maximum(x.max(axis=1), -x.min(axis=1)), np.finfo(np.float32).tiny)[:, None] / np.float32(QMAX)
        scaled = x / scale
        np.rint(scaled, out=scaled)
        with cpu_threads(1), torch.inference_mode():  # one thread, as numpy's BLAS serves (ranking.single_threaded_blas)
            out = torch._int_mm(torch.from_numpy(scaled.astype(np.int8)), self._weight).to(torch.float32)
            out.mul_(torch.from_numpy(scale.astype(np.float32, copy=False)))
            out.mul_(self._weight_scale)
            out.add_(self._bias)
        return out.numpy()
