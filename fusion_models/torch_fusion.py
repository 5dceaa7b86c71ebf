"""Late-fusion network: a tabular (EHR) branch and an imaging branch, each with missingness masks.

Architecture (``LateFusionNet``), input = the encoded feature matrix with NaN for missing values:

* per column: ``z = (x − mean) / std`` with NaN → 0, and a mask channel ``m = isnan(x)``;
* tabular branch: MLP over ``[z_ehr, m_ehr]``; imaging branch: MLP over ``[z_img, m_img]``;
* ``has_imaging`` = 1 when any imaging column is present; the imaging embedding is multiplied by it, so a
  patient without any CT gets exactly the tabular-only pathway;
* head: MLP over ``[h_ehr, h_img · has_imaging, has_imaging]`` → one logit.

Training uses *modality dropout* (imaging columns blanked for a share of training rows) so the no-imaging
pathway is learned even in a cohort where most patients have a CT; missing labs need nothing special (their
masks are inputs). Stored as a ``state_dict`` plus a JSON config (layer sizes, column indices), never a pickled
module. For inference the network is traced, frozen and optimised (``torch.jit.trace`` → ``torch.jit.freeze`` →
``torch.jit.optimize_for_inference``): shared/reference/performance.md §3 measured 21 µs per row that way vs
58 µs eager.

Explanation (``occlusion``): feature ablation (occlusion) per source feature, as Captum's ``FeatureAblation``:
the change in logit when that feature's encoded columns are replaced by their training means, all variants
scored in one batched call. Contributions are on the log-odds scale; unlike TreeSHAP they need not sum to the
logit.

This module imports torch; the runtime imports it only when an artifact's blend gives the network a weight.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

FloatMatrix = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]

CHUNK_ROWS = 2048
STATE_FILE = "torch_fusion.pt"
CONFIG_FILE = "torch_fusion.json"


@dataclass(frozen=True, slots=True)
class TorchParams:
    hidden_ehr: int = 32
    hidden_imaging: int = 32
    hidden_head: int = 32
    dropout: float = 0.1
    imaging_dropout: float = 0.15
    """Share of training rows whose imaging columns are blanked (modality dropout)."""
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    max_epochs: int = 60
    patience: int = 8
    threads: int = 1
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NetConfig:
    n_columns: int
    ehr_columns: tuple[int, ...]
    imaging_columns: tuple[int, ...]
    hidden_ehr: int
    hidden_imaging: int
    hidden_head: int
    dropout: float

    def to_json(self) -> dict[str, Any]:
        return {"n_columns": self.n_columns, "ehr_columns": list(self.ehr_columns),
                "imaging_columns": list(self.imaging_columns), "hidden_ehr": self.hidden_ehr,
                "hidden_imaging": self.hidden_imaging, "hidden_head": self.hidden_head, "dropout": self.dropout}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetConfig:
        return cls(n_columns=int(data["n_columns"]), ehr_columns=tuple(data["ehr_columns"]),
                   imaging_columns=tuple(data["imaging_columns"]), hidden_ehr=int(data["hidden_ehr"]),
                   hidden_imaging=int(data["hidden_imaging"]), hidden_head=int(data["hidden_head"]),
                   dropout=float(data["dropout"]))


class LateFusionNet(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor
    ehr_idx: torch.Tensor
    img_idx: torch.Tensor

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        if not config.ehr_columns or not config.imaging_columns:
            raise ValueError('Argument "config" must give both an EHR and an imaging column set.')
        self.config = config
        self.register_buffer("mean", torch.zeros(config.n_columns))
        self.register_buffer("std", torch.ones(config.n_columns))
        self.register_buffer("ehr_idx", torch.tensor(config.ehr_columns, dtype=torch.long))
        self.register_buffer("img_idx", torch.tensor(config.imaging_columns, dtype=torch.long))
        n_e, n_i = len(config.ehr_columns), len(config.imaging_columns)
        self.ehr = nn.Sequential(nn.Linear(2 * n_e, config.hidden_ehr), nn.ReLU(),
                                 nn.Linear(config.hidden_ehr, config.hidden_ehr), nn.ReLU())
        self.imaging = nn.Sequential(nn.Linear(2 * n_i, config.hidden_imaging), nn.ReLU(),
                                     nn.Linear(config.hidden_imaging, config.hidden_imaging), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(config.hidden_ehr + config.hidden_imaging + 1, config.hidden_head),
                                  nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.hidden_head, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(x)
        z = torch.where(missing, torch.zeros_like(x), (x - self.mean) / self.std)
        m = missing.to(x.dtype)
        z_e, m_e = z.index_select(1, self.ehr_idx), m.index_select(1, self.ehr_idx)
        z_i, m_i = z.index_select(1, self.img_idx), m.index_select(1, self.img_idx)
        has_imaging = (1.0 - m_i).amax(dim=1, keepdim=True)
        h_e = self.ehr(torch.cat([z_e, m_e], dim=1))
        h_i = self.imaging(torch.cat([z_i, m_i], dim=1)) * has_imaging
        return self.head(torch.cat([h_e, h_i, has_imaging], dim=1)).squeeze(1)


def _standardisation(x: FloatMatrix) -> tuple[FloatArray, FloatArray]:
    with np.errstate(all="ignore"):
        present = ~np.isnan(x)
        counts = present.sum(axis=0)
        mean = np.where(counts > 0, np.nansum(x, axis=0) / np.maximum(counts, 1), 0.0)
        var = np.where(counts > 1, np.nansum((x - mean) ** 2, axis=0) / np.maximum(counts - 1, 1), 1.0)
    std = np.sqrt(var)
    std = np.where(std > 1e-6, std, 1.0)
    return mean.astype(np.float64), std.astype(np.float64)


def train_network(x_train: FloatMatrix, y_train: FloatArray, x_val: FloatMatrix, y_val: FloatArray,
                  ehr_columns: tuple[int, ...], imaging_columns: tuple[int, ...], params: TorchParams
                  ) -> tuple[LateFusionNet, dict[str, Any]]:
    """Adam on binary cross-entropy with early stopping on validation loss; returns the best network."""
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(params.threads)
    try:
        config = NetConfig(n_columns=x_train.shape[1], ehr_columns=ehr_columns, imaging_columns=imaging_columns,
                           hidden_ehr=params.hidden_ehr, hidden_imaging=params.hidden_imaging,
                           hidden_head=params.hidden_head, dropout=params.dropout)
        net = LateFusionNet(config)
        mean, std = _standardisation(x_train)
        net.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        net.std.copy_(torch.from_numpy(std.astype(np.float32)))
        opt = torch.optim.Adam(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        xt, yt = torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train.astype(np.float32))
        xv, yv = torch.from_numpy(np.ascontiguousarray(x_val)), torch.from_numpy(y_val.astype(np.float32))
        img = torch.tensor(imaging_columns, dtype=torch.long)
        best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
        history: list[float] = []
        for epoch in range(params.max_epochs):
            net.train()
            order = torch.from_numpy(rng.permutation(xt.shape[0]))
            for start in range(0, xt.shape[0], params.batch_size):
                idx = order[start:start + params.batch_size]
                xb = xt[idx].clone()
                if params.imaging_dropout > 0:
                    drop = torch.from_numpy(rng.random(xb.shape[0]) < params.imaging_dropout)
                    rows = drop.nonzero().squeeze(1)
                    if rows.numel():
                        xb[rows.unsqueeze(1), img.unsqueeze(0)] = float("nan")
                opt.zero_grad()
                loss = loss_fn(net(xb), yt[idx])
                loss.backward()
                opt.step()
            net.eval()
            with torch.inference_mode():
                val_loss = float(loss_fn(net(xv), yv))
            history.append(val_loss)
            if val_loss < best_loss - 1e-5:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= params.patience:
                    break
        assert best_state is not None
        net.load_state_dict(best_state)
        net.eval()
        return net, {"best_epoch": best_epoch, "best_val_logloss": best_loss, "val_logloss_history": history}
    finally:
        torch.set_num_threads(previous_threads)


def save_network(net: LateFusionNet, directory: Path) -> None:
    torch.save(net.state_dict(), directory / STATE_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(net.config.to_json(), indent=1))


def load_network(directory: Path) -> LateFusionNet:
    config = NetConfig.from_json(json.loads((directory / CONFIG_FILE).read_text()))
    net = LateFusionNet(config)
    net.load_state_dict(torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True))
    net.eval()
    return net


class FrozenNetwork:
    """The network traced, frozen and optimised for inference (one torch thread per worker)."""

    def __init__(self, net: LateFusionNet, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        net.eval()
        example = torch.zeros(4, net.config.n_columns)
        self.module: Callable[[torch.Tensor], torch.Tensor]
        try:
            # TorchScript is deprecated in favour of torch.compile/torch.export, but torch.compile does not help a
            # batch-1 CPU call (performance.md §3: 64 µs vs 21 µs frozen); keep it while it exists.
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", DeprecationWarning)
                traced = torch.jit.trace(net, example, check_trace=False)
                self.module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        except (AttributeError, RuntimeError):  # pragma: no cover - a torch without TorchScript: eager inference
            self.module = net
        self.mean = net.mean.detach().numpy().astype(np.float32)
        self._occlusion_groups: tuple[tuple[int, ...], ...] = ()
        self._occlusion_mask = np.zeros((1, net.config.n_columns), dtype=bool)

    def logits(self, x: FloatMatrix) -> FloatArray:
        """Logits of a batch, in chunks of ``CHUNK_ROWS`` (performance.md §3: ~1k-row batches stay in cache;
        65k-row batches run at half the rate)."""
        data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.inference_mode():
            if data.shape[0] <= CHUNK_ROWS:
                out = self.module(data)
            else:
                out = torch.cat([self.module(part) for part in torch.split(data, CHUNK_ROWS)])
        return out.numpy().astype(np.float64).reshape(-1)

    def occlusion(self, x: FloatMatrix, groups: tuple[tuple[int, ...], ...]) -> tuple[float, FloatArray]:
        """(logit of the row, per-group logit change when the group is replaced by its training means)."""
        if self._occlusion_groups != groups:
            mask = np.zeros((len(groups) + 1, x.shape[1]), dtype=bool)
            for g, cols in enumerate(groups, start=1):
                mask[g, list(cols)] = True
            self._occlusion_mask, self._occlusion_groups = mask, groups
        batch = np.where(self._occlusion_mask, self.mean, x[:1])
        logits = self.logits(batch)
        return float(logits[0]), logits[0] - logits[1:]
