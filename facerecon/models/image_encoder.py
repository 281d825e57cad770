"""Multi-scale image encoder (paper section 2.1): dilated ResNet-50 trunk + dense dilated module.

``image (B, 3, H, W) in [0, 1] -> features (B, out_channels, R, R)``:

1. ImageNet normalisation, then a ResNet-50 trunk of output stride 8 (layer3 and
   layer4 dilated instead of strided): ``(B, C_trunk, ceil(H/8), ceil(W/8))``,
   C_trunk = 2048 with all 4 stages, 512 with 2 (a cheap CPU-demo trunk).
2. Dense dilated module (DenseASPP style), K = len(rates) branches: branch k
   reads ``[trunk, out_1, ..., out_{k-1}]`` (C_trunk + (k-1) * branch_channels
   channels) -> 1x1 conv to 2 * branch_channels -> ReLU -> 3x3 conv of dilation
   r_k (padding r_k) to branch_channels -> ReLU.
3. Global-average-pooling branch: GAP of the trunk -> 1x1 conv to
   branch_channels -> ReLU, broadcast over the map (the image-wide context).
4. ``[out_1, ..., out_K, gap]`` -> 1x1 fusion conv to out_channels -> bilinear
   resize (align_corners=False) to R x R.

Choices:
- The trunk is built here, module for module as torchvision's
  ``resnet50(weights=None, replace_stride_with_dilation=[False, True, True])``
  (same names, state-dict keys, shapes, dilations and initialisation), not
  imported: torchvision's only wheel here is a CUDA build that cannot be
  imported with the CPU torch. :meth:`ImageEncoder.load_backbone` reads a file
  written by ``torch.save(torchvision.models.resnet50().state_dict(), path)``;
  nothing is ever downloaded.
- No normalisation in the branches: BatchNorm statistics are unreliable at the
  small per-step batches of training and fitting; GroupNorm would work at any
  batch size but the paper names none, and the branches are only two convs
  deep on top of the (BatchNorm) trunk.
- The trunk's BatchNorm layers are ordinary ones: freezing the backbone
  (:meth:`ImageEncoder.backbone_parameters`) stops its weights, not its running
  statistics; a trainer that wants those fixed too puts ``encoder.trunk`` in
  eval mode.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facerecon.errors import InputError  # = facerecon.io.InputError (a leaf module)

#: ImageNet channel means and standard deviations of [0, 1] RGB (torchvision's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Trunk channels after ``trunk_stages`` stages (planes * expansion 4 of the last layer).
TRUNK_CHANNELS = {2: 512, 3: 1024, 4: 2048}

_LAYERS = ((64, 3), (128, 4), (256, 6), (512, 3))  # ResNet-50: (planes, blocks) of layer1..4


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (expansion 4, stride and dilation in the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inplanes, H, W) -> (B, 4 planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def dilated_resnet50_trunk(stages: int = 4) -> nn.Sequential:
    """The first ``stages`` layers of ResNet-50 at output stride 8.

    Equals torchvision's ``resnet50(replace_stride_with_dilation=[False, True,
    True])`` without avgpool and fc (and without layer3/layer4 for 2 stages),
    keys ``conv1.weight``, ``layer1.0.conv1.weight``, ...; layer3 and layer4
    keep stride 1 and dilate (first block by the previous dilation, as
    torchvision does). Initialised as torchvision: Kaiming-normal (fan_out)
    convs, BatchNorm weight 1 and bias 0.
    """
    if stages not in TRUNK_CHANNELS:
        raise ValueError(f"trunk_stages must be one of {sorted(TRUNK_CHANNELS)}, got {stages}")
    modules: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), bn1=nn.BatchNorm2d(64),
        relu=nn.ReLU(inplace=True), maxpool=nn.MaxPool2d(3, stride=2, padding=1))
    inplanes, dilation = 64, 1
    for index, (planes, blocks) in enumerate(_LAYERS[:stages]):
        stride, previous_dilation = (1 if index == 0 else 2), dilation
        if index >= 2:  # replace_stride_with_dilation=[False, True, True]
            dilation, stride = dilation * stride, 1
        downsample = None
        if stride != 1 or inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion))
        layer = [Bottleneck(inplanes, planes, stride, downsample, previous_dilation)]
        inplanes = planes * Bottleneck.expansion
        layer += [Bottleneck(inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        modules[f"layer{index + 1}"] = nn.Sequential(*layer)
    trunk = nn.Sequential(modules)
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return trunk


class DilatedBranch(nn.Module):
    """One branch of the dense dilated module: 1x1 conv -> ReLU -> dilated 3x3 conv -> ReLU."""

    def __init__(self, in_channels: int, channels: int, rate: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, 2 * channels, 1)
        self.conv = nn.Conv2d(2 * channels, channels, 3, padding=rate, dilation=rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, channels, h, w)."""
        return torch.relu(self.conv(torch.relu(self.reduce(x))))


class ImageEncoder(nn.Module):
    """Multi-scale contextual features of an aligned face crop (paper section 2.1).

    ``trunk`` holds the ResNet-50 layers under torchvision's names; ``branches``
    the K dilated branches (branch k: ``reduce`` 1x1, ``conv`` dilated 3x3);
    ``gap`` the global-pooling branch's 1x1 conv; ``fuse`` the fusion 1x1 conv.
    """

    def __init__(self, trunk_stages: int = 4, branch_channels: int = 64, out_channels: int = 128,
                 rates: tuple[int, ...] = (1, 6, 12, 18, 24), out_resolution: int = 32) -> None:
        super().__init__()
        if not rates or any(int(r) != r or r < 1 for r in rates):
            raise ValueError(f"rates must be one or more positive integers, got {rates}")
        if min(branch_channels, out_channels, out_resolution) < 1:
            raise ValueError("branch_channels, out_channels and out_resolution must be positive")
        self.trunk_stages = trunk_stages
        self.trunk_channels = TRUNK_CHANNELS.get(trunk_stages, 0)
        self.rates = tuple(int(r) for r in rates)
        self.out_channels = out_channels
        self.out_resolution = out_resolution
        self.trunk = dilated_resnet50_trunk(trunk_stages)
        self.branches = nn.ModuleList(
            DilatedBranch(self.trunk_channels + k * branch_channels, branch_channels, rate)
            for k, rate in enumerate(self.rates))
        self.gap = nn.Conv2d(self.trunk_channels, branch_channels, 1)
        self.fuse = nn.Conv2d((len(self.rates) + 1) * branch_channels, out_channels, 1)
        head = [*self.branches.modules(), self.gap, self.fuse]
        for module in head:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        # Constants, not weights: kept out of state dicts (persistent=False).
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.trunk.eval()  # from the start, not only after a .train() call (see train)

    def train(self, mode: bool = True) -> ImageEncoder:
        """Train mode for the head; the trunk's BatchNorm layers always use their stored
        statistics (batches of a few faces would give unstable batch statistics)."""
        super().train(mode)
        self.trunk.eval()
        return self

    def trunk_features(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) RGB in [0, 1] -> (B, C_trunk, ceil(H/8), ceil(W/8)), after
        ImageNet normalisation."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch (B, 3, H, W), got {tuple(image.shape)}")
        return self.trunk((image - self.mean) / self.std)

    def multi_scale(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features (B, C_trunk, h, w) -> (B, out_channels, R, R): dense dilated
        branches and the GAP branch, fused by a 1x1 conv, resized bilinearly to R."""
        inputs, outputs = features, []
        for branch in self.branches:
            out = branch(inputs)
            outputs.append(out)
            inputs = torch.cat([inputs, out], dim=1)
        pooled = torch.relu(self.gap(features.mean(dim=(2, 3), keepdim=True)))  # (B, bc, 1, 1)
        outputs.append(pooled.expand(-1, -1, *features.shape[2:]))
        fused = self.fuse(torch.cat(outputs, dim=1))  # (B, out_channels, h, w)
        size = (self.out_resolution, self.out_resolution)
        if tuple(fused.shape[2:]) == size:
            return fused
        return F.interpolate(fused, size=size, mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [0, 1] -> features (B, out_channels, out_resolution,
        out_resolution)."""
        return self.multi_scale(self.trunk_features(image))

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The ResNet trunk's parameters only (frozen for the first epochs by the trainer)."""
        return list(self.trunk.parameters())

    def load_backbone(self, path: str | os.PathLike) -> None:
        """Load the trunk from a torchvision ``resnet50`` state dict file.

        The file is read with ``weights_only=True`` (no pickled code runs). Keys
        of layers this trunk lacks (``fc.*``; layer3/layer4 for 2 stages) are
        ignored; ``num_batches_tracked`` may be absent (older torchvision
        files). InputError naming the file, and the trunk left unchanged, for an
        unreadable file, a missing, unexpected, mis-shaped or non-finite tensor.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{path}: backbone weights file not found") from None
        except Exception as exc:  # any unpickling failure: a bad file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InputError(f"{path}: not a weights-only torch state dict "
                             f"({type(exc).__name__}: {reason})") from exc
        if not isinstance(state, Mapping) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise InputError(f"{path}: not a state dict (a mapping of names to tensors)")
        own = self.trunk.state_dict()
        ignored = ("fc.", *(f"layer{i + 1}." for i in range(self.trunk_stages, len(_LAYERS))))
        problems = [f"missing {k}" for k in own
                    if k not in state and not k.endswith("num_batches_tracked")]
        problems += [f"unexpected {k}" for k in state if k not in own and not k.startswith(ignored)]
        floats = []
        for key in [k for k in own if k in state]:
            have, want = state[key], own[key]
            if have.shape != want.shape or have.is_floating_point() != want.is_floating_point():
                problems.append(f"{key} is {have.dtype} {tuple(have.shape)}, expected "
                                f"{want.dtype} {tuple(want.shape)}")
            elif have.is_floating_point():
                floats.append(key)
        if floats and not bool(torch.isfinite(torch.cat([state[k].reshape(-1).float()
                                                         for k in floats])).all()):
            problems += [f"{k} has non-finite values" for k in floats
                         if not bool(torch.isfinite(state[k]).all())]
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                               if len(problems) > 5 else "")
            raise InputError(f"{path}: not a ResNet-50 state dict for a {self.trunk_stages}-stage "
                             f"trunk ({shown})")
        self.trunk.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
