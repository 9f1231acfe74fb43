"""The self-supervised objectives of the paper's extractors, built from Lightly's parts.

Paper section 3 uses MoCo; appendix A.3 (figs. 8, 9) compares BYOL, SimCLR and DINO
features, all trained with the Lightly library on CIFAR-10. Each objective here owns the
heads, the momentum (teacher) copies and the loss of one method; the training loop
(:func:`databrittle.ssl.train_ssl`) is shared, so all four see the same backbone, data
order, augmentations, optimiser and learning-rate schedule (Lightly's CIFAR-10 benchmark
also trains every method with the same SGD settings).

===========  =====================================  ======================  ==============
method       trained heads (Lightly)                teacher (EMA, cosine    loss (Lightly)
                                                    momentum -> 1)
===========  =====================================  ======================  ==============
``moco``     MoCoProjectionHead(d, d, p)            backbone + projection   NTXentLoss with
                                                                            a queue
``simclr``   SimCLRProjectionHead(d, d, p)          none                    NTXentLoss
``byol``     BYOLProjectionHead(d, h, p) +          backbone + projection   NegativeCosine-
             BYOLPredictionHead(p, h, p)                                    Similarity
``dino``     DINOProjectionHead(d, h, bottleneck,   backbone + head         DINOLoss
             output_dim, batch_norm=True)
===========  =====================================  ======================  ==============

(``d`` backbone feature width, ``p`` = ``ssl.projection_dim``, ``h`` = the method's
``hidden_dim``.) Every loss is symmetric over the two views and computed in ONE call on
the concatenated batch. Teachers start as copies of the student (as in the BYOL and DINO
papers; Lightly's DINO example draws a fresh teacher head instead). DINO's head uses
batch norm because the backbone is a ResNet (the DINO paper drops it only for ViTs).

The "projection" feature layer (DESIGN.md section 1, ``ssl.feature_layer``) is the output
of the head a checkpoint keeps as ``projection``: MoCo/SimCLR/BYOL projection head (not
BYOL's predictor); for DINO the l2-normalised bottleneck (the input of its prototype
layer), since the ``output_dim`` prototype scores are a clustering, not an embedding.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules import (BYOLPredictionHead, BYOLProjectionHead, DINOProjectionHead,
                                    MoCoProjectionHead, SimCLRProjectionHead)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn

from databrittle.methods import SSL_METHODS

def head_spec(method: str, feature_dim: int, section: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of the head kept as ``projection`` (recorded in checkpoints)."""
    p = int(section["projection_dim"])
    if method in ("moco", "simclr"):
        return {"input_dim": feature_dim, "hidden_dim": feature_dim, "output_dim": p}
    if method == "byol":
        return {"input_dim": feature_dim, "hidden_dim": int(section["hidden_dim"]), "output_dim": p}
    if method == "dino":
        return {"input_dim": feature_dim, "hidden_dim": int(section["hidden_dim"]),
                "bottleneck_dim": int(section["bottleneck_dim"]), "output_dim": int(section["output_dim"]),
                "batch_norm": True, "freeze_last_layer": int(section["freeze_last_layer"])}
    raise ValueError(f"unknown SSL method {method!r} (expected one of {SSL_METHODS})")


_HEADS: dict[str, Callable[..., nn.Module]] = {
    "moco": MoCoProjectionHead, "simclr": SimCLRProjectionHead, "byol": BYOLProjectionHead,
    "dino": DINOProjectionHead,
}


def build_head(method: str, spec: dict[str, Any]) -> nn.Module:
    """The (untrained) ``projection`` head of ``method`` from its :func:`head_spec`."""
    return _HEADS[method](**spec)


def projection_features(method: str, head: nn.Module, backbone_features: torch.Tensor) -> torch.Tensor:
    """The "projection" feature layer: ``(n, d)`` backbone features -> ``(n, p)``."""
    if method == "dino":
        return F.normalize(head.layers(backbone_features), dim=1)
    return head(backbone_features)


class Objective:
    """Heads, teacher and loss of one SSL method around a shared ``backbone``.

    Built inside the caller's seeded RNG fork (head initialisation and MoCo's queue draw
    from it). ``loss(views, epoch)`` takes the two augmented views concatenated,
    ``(2b, c, h, w)``, and returns the symmetric loss of the batch.
    """

    uses_momentum = True

    def __init__(self, method: str, backbone: nn.Module, section: dict[str, Any]) -> None:
        self.method = method
        self.backbone = backbone
        self.spec = head_spec(method, backbone.feature_dim, section)
        self.head = build_head(method, self.spec)
        self.teacher: list[tuple[nn.Module, nn.Module]] = []

    def _copy(self, module: nn.Module) -> nn.Module:
        """An identical, independent copy of ``module`` (the teacher's starting point)."""
        if module is self.head and self.method == "dino":
            # weight_norm's computed weight is not a leaf tensor, so deepcopy refuses it:
            # rebuild the head and copy the student's parameters instead
            clone = build_head(self.method, self.spec)
            clone.load_state_dict(module.state_dict())
            return clone
        return copy.deepcopy(module)

    def _make_teacher(self, *students: nn.Module) -> list[nn.Module]:
        copies = [self._copy(module) for module in students]
        for student, teacher in zip(students, copies):
            deactivate_requires_grad(teacher)
            self.teacher.append((student, teacher))
        return copies

    def trainable(self) -> list[nn.Module]:
        """Modules the optimiser updates, in parameter order."""
        return [self.backbone, self.head]

    def modules(self) -> list[nn.Module]:
        """Every module and loss buffer that must live on the training device."""
        return [*self.trainable(), *(teacher for _, teacher in self.teacher)]

    def update_teacher(self, momentum: float) -> None:
        """EMA step of every teacher module towards its student (Lightly's ``update_momentum``)."""
        for student, teacher in self.teacher:
            update_momentum(student, teacher, momentum)

    def prepare(self, x_all: torch.Tensor, batch_size: int, augment: Callable, generator: torch.Generator) -> None:
        """Called once before step 0 (MoCo fills its queue here)."""

    def loss(self, views: torch.Tensor, epoch: int) -> torch.Tensor:
        raise NotImplementedError

    def after_backward(self, epoch: int) -> None:
        """Called between ``backward`` and the optimiser step (DINO freezes its last layer)."""


def _swap_halves(x: torch.Tensor) -> torch.Tensor:
    """``[a, b] -> [b, a]`` along dim 0: pairs each view with the other view of its image."""
    half = x.shape[0] // 2
    return torch.cat([x[half:], x[:half]])


class MoCo(Objective):
    """MoCo: InfoNCE of queries against the momentum keys of the other view and a queue."""

    def __init__(self, backbone: nn.Module, section: dict[str, Any]) -> None:
        super().__init__("moco", backbone, section)
        self.backbone_key, self.head_key = self._make_teacher(self.backbone, self.head)
        queue_size, dim = int(section["queue_size"]), int(section["projection_dim"])
        # The queue starts as random unit vectors drawn from the (forked, seeded) global RNG.
        self.criterion = NTXentLoss(temperature=float(section["temperature"]),
                                    memory_bank_size=(queue_size, dim) if queue_size > 0 else 0)
        self.queue_size = queue_size

    def modules(self) -> list[nn.Module]:
        return [*super().modules(), self.criterion]

    def prepare(self, x_all: torch.Tensor, batch_size: int, augment: Callable, generator: torch.Generator) -> None:
        if self.queue_size > 0:
            _warm_queue(self.criterion, self.backbone_key, self.head_key, x_all, batch_size, augment, generator,
                        self.queue_size)

    def loss(self, views: torch.Tensor, epoch: int) -> torch.Tensor:
        queries = self.head(self.backbone(views))
        with torch.no_grad():
            keys = self.head_key(self.backbone_key(views))
        return self.criterion(queries, _swap_halves(keys))


class SimCLR(Objective):
    """SimCLR: NT-Xent between the two views' projections, in-batch negatives."""

    uses_momentum = False

    def __init__(self, backbone: nn.Module, section: dict[str, Any]) -> None:
        super().__init__("simclr", backbone, section)
        self.criterion = NTXentLoss(temperature=float(section["temperature"]))

    def loss(self, views: torch.Tensor, epoch: int) -> torch.Tensor:
        z = self.head(self.backbone(views))
        half = z.shape[0] // 2
        return self.criterion(z[:half], z[half:])


class BYOL(Objective):
    """BYOL: the student's prediction regresses the teacher's projection of the other view."""

    def __init__(self, backbone: nn.Module, section: dict[str, Any]) -> None:
        super().__init__("byol", backbone, section)
        p, h = int(section["projection_dim"]), int(section["hidden_dim"])
        self.predictor = BYOLPredictionHead(p, h, p)
        self.backbone_teacher, self.head_teacher = self._make_teacher(self.backbone, self.head)
        self.criterion = NegativeCosineSimilarity()

    def trainable(self) -> list[nn.Module]:
        return [self.backbone, self.head, self.predictor]

    def loss(self, views: torch.Tensor, epoch: int) -> torch.Tensor:
        predictions = self.predictor(self.head(self.backbone(views)))
        with torch.no_grad():
            targets = self.head_teacher(self.backbone_teacher(views))
        return self.criterion(predictions, _swap_halves(targets))


class DINO(Objective):
    """DINO: the student's prototype scores match the centred, sharpened teacher's."""

    def __init__(self, backbone: nn.Module, section: dict[str, Any]) -> None:
        super().__init__("dino", backbone, section)
        self.backbone_teacher, self.head_teacher = self._make_teacher(self.backbone, self.head)
        self.criterion = DINOLoss(output_dim=int(section["output_dim"]),
                                  warmup_teacher_temp=float(section["warmup_teacher_temp"]),
                                  teacher_temp=float(section["teacher_temp"]),
                                  warmup_teacher_temp_epochs=int(section["warmup_teacher_temp_epochs"]),
                                  student_temp=float(section["student_temp"]),
                                  center_momentum=float(section["center_momentum"]))

    def modules(self) -> list[nn.Module]:
        return [*super().modules(), self.criterion]

    def loss(self, views: torch.Tensor, epoch: int) -> torch.Tensor:
        student = self.head(self.backbone(views))
        with torch.no_grad():
            teacher = self.head_teacher(self.backbone_teacher(views))
        return self.criterion(list(teacher.chunk(2)), list(student.chunk(2)), epoch=epoch)

    def after_backward(self, epoch: int) -> None:
        self.head.cancel_last_layer_gradients(epoch)


OBJECTIVES: dict[str, type[Objective]] = {"moco": MoCo, "simclr": SimCLR, "byol": BYOL, "dino": DINO}


@torch.no_grad()
def _warm_queue(criterion: NTXentLoss, backbone_key: nn.Module, projection_key: nn.Module, x_all: torch.Tensor,
                batch_size: int, augment: Callable, generator: torch.Generator, queue_size: int) -> None:
    """Fill MoCo's queue with real keys before step 0.

    Lightly's ``MemoryBankModule`` starts the queue as random unit vectors. Against such
    negatives the query encoder can lower the loss by mapping every image to one
    direction; once the queue has filled with those keys the loss sits at
    ``log(queue_size + 1)`` (all logits equal) and learning stalls. On digits with the
    default config this happened (kNN accuracy 0.947 instead of 0.972; with ``momentum:
    0.9`` or ``lr: 0.12`` the loss ended exactly at log(2049) = 7.625). Filling the queue
    first with keys of the (initial) key encoder on augmented views -- images taken in
    dataset order, cycling when the queue is longer than the dataset -- removes that
    shortcut; the augmentation generator supplies the views, so this stays deterministic.
    """
    bank = criterion.memory_bank
    filled, start = 0, 0
    n = x_all.shape[0]
    while filled < queue_size:
        index = torch.arange(start, start + batch_size) % n
        start = (start + batch_size) % n
        keys = F.normalize(projection_key(backbone_key(augment(x_all[index.to(x_all.device)], generator))), dim=1)
        keys = keys[: queue_size - filled]
        bank(keys, update=True)
        filled += keys.shape[0]
