"""DeepCluster (Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features",
ECCV 2018), in 3D.

Each epoch (``on_epoch_start``): the encoder's bottleneck, global-average pooled, is
computed for every cube of the training pool (eval mode, no gradient, in batches);
PCA to at most 256 dimensions (and at most ``n_samples - 1``) with whitening (components
with a negligible variance are dropped so whitening cannot blow up noise); rows
L2-normalised; k-means (scikit-learn, k-means++ init, one run, seeded from the passed
generator). Empty clusters are re-seeded as in the paper (and in the faiss k-means it
used): pick a non-empty cluster with probability proportional to its size minus one,
give the empty cluster that centroid plus a small random perturbation and the donor
the same minus it, and split the donor's members between the two by nearest centroid
(by the perturbation direction when they are indistinguishable). The classifier head
is then re-initialised and the cubes are trained with cross-entropy on these
pseudo-labels, sampled uniformly over the non-empty clusters (a cluster uniformly, then
one of its cubes uniformly).

The pretext model is the backbone's encoder plus one linear layer on the pooled
bottleneck (the features that are clustered). Transfers the encoder only.

Settings: ``n_clusters`` None: k = ``clip(N // cubes_per_cluster, 2, max_clusters)``
with ``cubes_per_cluster`` 30, ``max_clusters`` 1000 (about 30 cubes per cluster,
within the spec's 10-100) *(choice)*, and never more than N; ``pca_dims`` 256;
``flip_augment`` True: each sampled cube is flipped along each spatial axis with
probability 0.5 (the paper trains with random flips and crops; crops are left out, the
cube size being fixed); ``feature_batch`` 32 (memory only).
``paper_optimizer``: SGD lr 0.05, momentum 0.9 (the paper; its weight decay 1e-5 too).

Harness details:

* The head is created once with ``n_clusters`` outputs (or ``max_clusters`` when k is
  chosen from the pool, whose size the model does not know when it is built); the loss
  uses the first k logits. Re-initialisation is in place (same ``Parameter`` objects, so
  the loop's optimiser keeps them), with the method's initialiser (``init_weights``); the
  optimiser state of the head (Adam moments and step, SGD momentum) is dropped: the
  method keeps a reference to the optimiser ``make_optimizer`` returned.
* The validation pool gets pseudo-labels once an epoch, in the training process before its
  batches are drawn (``prepare_pool``; loader workers never compute features, so they never
  touch CUDA): nearest centroid of its features, computed with a snapshot of the encoder
  taken at clustering time and projected with the epoch's PCA, so train and validation
  labels come from the same feature map. Validation losses of different epochs are not
  comparable (new clusters, new head each epoch): early stopping on them is weak.

Departures: no Sobel filtering (it removes colour in the paper; CT is grey-level). The
paper's AlexNet/VGG classifier (fc6-fc7 + linear) becomes a single linear layer.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from benchmark.methods._common import EncoderClassifier, encoder_state, pooled
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from torch import nn
from torch.utils.data import get_worker_info

from benchmark.api.backbone import Backbone
from benchmark.api.method import Method
from benchmark.api.profiles import Profile
from benchmark.api.registry import METHODS

RELATIVE_VARIANCE_FLOOR = 1e-6


@torch.no_grad()
def encoder_features(
    encoder: nn.Module, pool: np.ndarray, device: torch.device, batch: int = 32
) -> np.ndarray:
    """Pooled bottleneck features ``(N, F)`` float64 of a pool, in eval mode (the mode is restored)."""
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = [pooled(encoder(torch.from_numpy(np.ascontiguousarray(pool[i:i + batch])).to(device))[1])
                  for i in range(0, len(pool), batch)]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks).double().cpu().numpy()


@dataclass
class FeatureSpace:
    """PCA with whitening (negligible components dropped), then L2 normalisation."""

    pca: PCA | None
    keep: np.ndarray | None

    @classmethod
    def fit(cls, features: np.ndarray, max_dims: int = 256) -> FeatureSpace:
        dims = min(max_dims, len(features) - 1, features.shape[1])
        if dims < 1:
            return cls(None, None)
        pca = PCA(n_components=dims, whiten=True, svd_solver="full").fit(features)
        variance = pca.explained_variance_
        keep = variance > RELATIVE_VARIANCE_FLOOR * max(float(variance.max()), 1e-300)
        return cls(pca, keep)

    def project(self, features: np.ndarray) -> np.ndarray:
        if self.pca is None or not self.keep.any():
            projected = np.zeros((len(features), 1))
        else:
            projected = self.pca.transform(features)[:, self.keep]
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return projected / np.where(norms > 0, norms, 1.0)


def fill_empty_clusters(
    points: np.ndarray, labels: np.ndarray, centroids: np.ndarray, rng: np.random.Generator,
    eps: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-seed every empty cluster from a perturbed non-empty one (Caron et al.; faiss).

    For each empty cluster: a donor is drawn with probability proportional to its size
    minus one; the empty cluster gets the donor's centroid + ``eps * noise``, the donor
    its centroid - ``eps * noise``; the donor's members go to the nearer of the two (when
    that leaves one side empty, they are split in half along the noise direction); both
    centroids become their members' means. Stops when no cluster has two members.
    Returns new ``(labels, centroids)``.
    """
    labels, centroids = labels.copy(), centroids.astype(np.float64, copy=True)
    k = len(centroids)
    for empty in range(k):
        sizes = np.bincount(labels, minlength=k)
        if sizes[empty] > 0:
            continue
        weights = np.maximum(sizes - 1, 0).astype(np.float64)
        if weights.sum() == 0:
            break
        donor = int(rng.choice(k, p=weights / weights.sum()))
        noise = eps * rng.standard_normal(centroids.shape[1])
        centroids[empty], centroids[donor] = centroids[donor] + noise, centroids[donor] - noise
        members = np.flatnonzero(labels == donor)
        to_empty = ((points[members] - centroids[empty]) ** 2).sum(axis=1)
        to_donor = ((points[members] - centroids[donor]) ** 2).sum(axis=1)
        nearer = to_empty < to_donor
        if nearer.all() or not nearer.any():
            order = np.argsort((points[members] - centroids[donor]) @ noise, kind="stable")
            nearer = np.zeros(len(members), dtype=bool)
            nearer[order[len(members) // 2:]] = True
        labels[members[nearer]] = empty
        centroids[empty] = points[members[nearer]].mean(axis=0)
        centroids[donor] = points[members[~nearer]].mean(axis=0)
    return labels, centroids


def cluster(points: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means on ``points``; returns ``(labels, centroids)`` with every cluster non-empty when
    there are at least ``k`` points."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        kmeans = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit(points)
    return fill_empty_clusters(points, kmeans.labels_.astype(np.int64), kmeans.cluster_centers_, rng)


def nearest_centroid(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    distances = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1).astype(np.int64)


def balanced_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices into ``labels``: a non-empty cluster uniformly, then one of its members uniformly."""
    clusters, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse))])
    picks = rng.integers(0, len(clusters), size=n)
    offsets = (rng.random(n) * (bounds[picks + 1] - bounds[picks])).astype(np.int64)
    return order[bounds[picks] + offsets]


def random_flips(cubes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip each ``(C, Z, Y, X)`` cube along each spatial axis with probability 0.5."""
    flips = rng.random((len(cubes), 3)) < 0.5
    out = [np.flip(cube, axis=tuple(1 + np.flatnonzero(flip))) if flip.any() else cube
           for cube, flip in zip(cubes, flips, strict=True)]
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


@METHODS.register
class DeepCluster(Method):
    name = "deepcluster"
    description = "Classify k-means pseudo-labels of its features, re-clustered per epoch (Caron et al. 2018)"
    transfers = "encoder"

    def __init__(
        self, n_clusters: int | None = None, cubes_per_cluster: int = 30, max_clusters: int = 1000,
        pca_dims: int = 256, flip_augment: bool = True, feature_batch: int = 32,
    ) -> None:
        if n_clusters is not None and n_clusters < 2:
            raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
        least = {"cubes_per_cluster": (cubes_per_cluster, 1), "max_clusters": (max_clusters, 2),
                 "pca_dims": (pca_dims, 1), "feature_batch": (feature_batch, 1)}
        for name, (value, minimum) in least.items():
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        self.n_clusters = n_clusters
        self.cubes_per_cluster = cubes_per_cluster
        self.max_clusters = max_clusters
        self.pca_dims = pca_dims
        self.flip_augment = flip_augment
        self.feature_batch = feature_batch
        self.k: int | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._reset_epoch_state()

    def _reset_epoch_state(self) -> None:
        self._space: FeatureSpace | None = None
        self._centroids: np.ndarray | None = None
        self._encoder: nn.Module | None = None
        self._device = torch.device("cpu")
        self._labelled: list[tuple[np.ndarray, np.ndarray]] = []  # (pool, labels), identity-keyed

    @property
    def head_size(self) -> int:
        return self.n_clusters if self.n_clusters is not None else self.max_clusters

    def clusters_for(self, n_samples: int) -> int:
        """k for a pool of ``n_samples`` cubes (never more than the cubes)."""
        k = self.n_clusters or int(np.clip(n_samples // self.cubes_per_cluster, 2, self.max_clusters))
        return max(1, min(k, n_samples))

    def build_pretext_model(self, backbone: Backbone, in_channels: int, width: int) -> nn.Module:
        return EncoderClassifier(backbone.build_encoder(in_channels, width), self.head_size)

    def make_optimizer(
        self, parameters: Any, profile: Profile
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        optimizer, scheduler = super().make_optimizer(parameters, profile)
        self._optimizer = optimizer
        return optimizer, scheduler

    def paper_optimizer(
        self, parameters: Any
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        return torch.optim.SGD(parameters, lr=0.05, momentum=0.9, weight_decay=1e-5), None

    def on_epoch_start(
        self, model: nn.Module, pool: np.ndarray, rng: np.random.Generator, device: torch.device
    ) -> None:
        self._reset_epoch_state()
        features = encoder_features(model.encoder, pool, device, self.feature_batch)
        self._space = FeatureSpace.fit(features, self.pca_dims)
        self.k = self.clusters_for(len(pool))
        labels, self._centroids = cluster(self._space.project(features), self.k, rng)
        self._labelled.append((pool, labels))
        self._encoder = copy.deepcopy(model.encoder).eval()
        self._device = device
        self.reset_head(model.head)

    def reset_head(self, head: nn.Module) -> None:
        """Re-initialise the classifier in place and drop its optimiser state."""
        self.init_weights(head)
        if self._optimizer is not None:
            for parameter in head.parameters():
                self._optimizer.state.pop(parameter, None)

    def prepare_pool(self, pool: np.ndarray) -> None:
        self.labels_for(pool)  # in the training process: loader workers find the labels made

    def labels_for(self, pool: np.ndarray) -> np.ndarray:
        """The pseudo-labels of ``pool``: the clustered training pool's, or nearest centroid."""
        for known, labels in self._labelled:
            if known is pool:
                return labels
        if get_worker_info() is not None:
            raise RuntimeError("deepcluster: a pool's pseudo-labels are made by prepare_pool in the training "
                               "process, not in a loader worker")
        if self._encoder is None or self._space is None or self._centroids is None:
            raise RuntimeError("deepcluster: on_epoch_start must cluster the training pool before sampling")
        features = encoder_features(self._encoder, pool, self._device, self.feature_batch)
        labels = nearest_centroid(self._space.project(features), self._centroids)
        self._labelled.append((pool, labels))
        return labels

    def sample_batch(
        self, pool: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = self.labels_for(pool)
        indices = balanced_indices(labels, batch_size, rng)
        cubes = np.asarray(pool[indices], dtype=np.float32)
        if self.flip_augment:
            cubes = random_flips(cubes, rng)
        return torch.from_numpy(np.ascontiguousarray(cubes)), torch.from_numpy(labels[indices])

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("deepcluster draws examples with sample_batch (it needs the pool's labels)")

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = self.k or output.shape[1]
        return nn.functional.cross_entropy(output[:, :k], target)

    def backbone_state(self, pretext_model: nn.Module) -> dict[str, torch.Tensor]:
        return encoder_state(pretext_model)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"n_clusters": int(self.k or 0)}
