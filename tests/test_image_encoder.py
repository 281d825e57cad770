"""Multi-scale image encoder (section 2.1): shapes, backbone loading, dense dilated module,
global-pooling branch, parameter groups and gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facerecon.io import InputError
from facerecon.models.image_encoder import ImageEncoder, dilated_resnet50_trunk

try:
    import torchvision
except Exception:  # not installed, or a CUDA build that cannot load with the CPU torch
    torchvision = None

needs_torchvision = pytest.mark.skipif(torchvision is None, reason="torchvision not importable")


def _image(size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """(batch, 3, size, size) uniform values in [0, 1]."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _perturbed(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with every tensor randomised (BatchNorm buffers included), so
    that equality after loading cannot come from two default initialisations."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.full_like(value, 7)
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            out[key] = torch.randn(value.shape, generator=gen) * 0.05
    return out


def _with_fc(trunk: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """``trunk`` randomised, plus the classifier (``fc.*``) of a whole torchvision file."""
    return _perturbed({**trunk, "fc.weight": torch.zeros(1000, 2048),
                       "fc.bias": torch.zeros(1000)}, seed)


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


# 1. Shapes -------------------------------------------------------------------------------


def test_trunk_is_stride_8_and_output_has_the_configured_shape() -> None:
    torch.manual_seed(0)
    image = _image(256)
    with torch.no_grad():
        full = ImageEncoder(trunk_stages=4).eval()
        features = full.trunk_features(image)
        assert features.shape == (1, 2048, 32, 32)
        assert full.multi_scale(features).shape == (1, 128, 32, 32)

        small = ImageEncoder(trunk_stages=2, branch_channels=16, out_channels=24,
                             out_resolution=16).eval()
        two = _image(256, batch=2)
        features = small.trunk_features(two)
        assert features.shape == (2, 512, 32, 32)
        out16 = small.multi_scale(features)
        assert out16.shape == (2, 24, 16, 16) and torch.isfinite(out16).all()

        # Same weights at R = 32 (= H/8: no resize); R = 16 is its bilinear resize.
        same = ImageEncoder(trunk_stages=2, branch_channels=16, out_channels=24,
                            out_resolution=32).eval()
        same.load_state_dict(small.state_dict())
        out32 = same.multi_scale(features)
        assert out32.shape == (2, 24, 32, 32)
        torch.testing.assert_close(out16, F.interpolate(out32, size=(16, 16), mode="bilinear",
                                                        align_corners=False))

        # forward = multi_scale(trunk_features); batch items are independent (eval mode).
        pair = _image(128, batch=2, seed=1)
        out = small(pair)
        assert out.shape == (2, 24, 16, 16)
        torch.testing.assert_close(out, small.multi_scale(small.trunk_features(pair)))
        torch.testing.assert_close(small(pair[1:]), out[1:], rtol=1e-4, atol=1e-5)


def test_normalisation_and_argument_checks() -> None:
    encoder = ImageEncoder(trunk_stages=2, branch_channels=8, out_channels=8)
    torch.testing.assert_close(encoder.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(encoder.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    assert "mean" not in encoder.state_dict() and "std" not in encoder.state_dict()
    encoder.eval()
    with torch.no_grad():  # the ImageNet mean colour reaches the trunk as zeros
        mean_colour = encoder.mean.expand(1, 3, 64, 64).clone()
        torch.testing.assert_close(encoder.trunk_features(mean_colour),
                                   encoder.trunk(torch.zeros(1, 3, 64, 64)))
        image = _image(64)
        torch.testing.assert_close(encoder.trunk_features(image), encoder.trunk(
            (image - torch.tensor([0.485, 0.456, 0.406])[:, None, None])
            / torch.tensor([0.229, 0.224, 0.225])[:, None, None]))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        encoder(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="trunk_stages"):
        ImageEncoder(trunk_stages=1)
    with pytest.raises(ValueError, match="rates"):
        ImageEncoder(trunk_stages=2, rates=())
    with pytest.raises(ValueError, match="rates"):
        ImageEncoder(trunk_stages=2, rates=(1, 0))


# 2. Backbone loading ---------------------------------------------------------------------


@needs_torchvision
@pytest.mark.parametrize("stages", [4, 2])
def test_load_backbone_reproduces_a_torchvision_resnet50(stages: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = _perturbed(torchvision.models.resnet50().state_dict(), seed=1)
    path = tmp_path / "resnet50.pth"
    torch.save(reference, path)
    encoder = ImageEncoder(trunk_stages=stages, branch_channels=8, out_channels=8)
    trunk = encoder.trunk.state_dict()
    assert not torch.equal(trunk["conv1.weight"], reference["conv1.weight"])
    encoder.load_backbone(path)
    trunk = encoder.trunk.state_dict()
    assert set(trunk) == {k for k in reference if not k.startswith(
        ("fc.", *(f"layer{i}." for i in range(stages + 1, 5))))}
    for key, value in trunk.items():
        assert torch.equal(value, reference[key]), key


@needs_torchvision
def test_trunk_matches_torchvision_module_for_module() -> None:
    torch.manual_seed(0)
    ours = dilated_resnet50_trunk(4).eval()
    theirs = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items()
                          if not k.startswith("fc.")})
    image = _image(64)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(theirs.children())[:-2])(image)
        torch.testing.assert_close(ours(image), expected)


@pytest.mark.parametrize("stages", [4, 2])
def test_trunk_has_resnet50_keys_and_loads_a_whole_resnet50_file(stages: int,
                                                                 tmp_path: Path) -> None:
    """Runs without torchvision: key counts and parameter totals are torchvision's
    resnet50 ones (320 keys with fc; 23,508,032 trunk parameters)."""
    encoder = ImageEncoder(trunk_stages=stages, branch_channels=8, out_channels=8)
    trunk = encoder.trunk.state_dict()
    n_keys, n_params = {4: (318, 23_508_032), 2: (144, 1_444_928)}[stages]
    assert len(trunk) == n_keys
    assert sum(p.numel() for p in encoder.backbone_parameters()) == n_params
    assert trunk["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    if stages == 4:
        assert trunk["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    reference = _with_fc(dilated_resnet50_trunk(4).state_dict(), seed=2)  # a whole resnet50
    path = tmp_path / "resnet50.pth"
    torch.save(reference, path)
    encoder.load_backbone(path)
    for key, value in encoder.trunk.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_load_backbone_refuses_bad_files_naming_them(tmp_path: Path) -> None:
    encoder = ImageEncoder(trunk_stages=2, branch_channels=8, out_channels=8)
    before = {k: v.clone() for k, v in encoder.trunk.state_dict().items()}
    good = _with_fc({**encoder.trunk.state_dict(),  # + layer3 and fc: ignored by 2 stages
                     "layer3.0.conv1.weight": torch.zeros(256, 512, 1, 1)}, seed=3)

    def refused(state: object, name: str, *fragments: str) -> None:
        path = tmp_path / name
        torch.save(state, path)
        with pytest.raises(InputError) as info:
            encoder.load_backbone(path)
        for text in (str(path), *fragments):
            assert text in str(info.value)

    refused({k: v for k, v in good.items() if k != "layer2.3.conv3.weight"}, "missing.pth",
            "missing layer2.3.conv3.weight")
    refused({**good, "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}, "shape.pth",
            "layer1.0.conv1.weight", "(64, 64, 3, 3)")
    refused({**good, "layer2.4.conv1.weight": torch.zeros(128, 512, 1, 1)}, "extra.pth",
            "unexpected layer2.4.conv1.weight")
    nan = good["bn1.weight"].clone()
    nan[0] = float("nan")
    refused({**good, "bn1.weight": nan}, "nan.pth", "bn1.weight", "non-finite")
    refused(list(good.values()), "list.pth", "not a state dict")
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="garbage.pth"):
        encoder.load_backbone(tmp_path / "garbage.pth")
    with pytest.raises(InputError, match="absent.pth"):
        encoder.load_backbone(tmp_path / "absent.pth")
    for key, value in encoder.trunk.state_dict().items():  # refused files change nothing
        assert torch.equal(value, before[key]), key

    # num_batches_tracked may be absent (older torchvision files); fc and layer3/4 ignored.
    encoder.load_backbone(_save(tmp_path / "old.pth", {
        k: v for k, v in good.items() if not k.endswith("num_batches_tracked")}))
    torch.testing.assert_close(encoder.trunk.state_dict()["layer2.3.bn3.running_var"],
                               good["layer2.3.bn3.running_var"])


class _Payload:
    """Pickles as a call of Path.touch: loading it without weights_only creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_load_backbone_never_runs_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _save(tmp_path / "evil.pth", {"conv1.weight": _Payload(marker)})
    encoder = ImageEncoder(trunk_stages=2, branch_channels=8, out_channels=8)
    with pytest.raises(InputError, match="evil.pth"):
        encoder.load_backbone(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.exists()


# 3. Dense dilated module -----------------------------------------------------------------


@pytest.mark.parametrize(("rates", "channels"), [((1, 6, 12, 18, 24), 64), ((2, 3), 16)])
def test_branches_have_the_configured_dilations_and_dense_inputs(
        rates: tuple[int, ...], channels: int) -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(trunk_stages=2, branch_channels=channels, out_channels=32,
                           rates=rates, out_resolution=16).eval()
    trunk_channels = 512
    assert len(encoder.branches) == len(rates)
    for k, (branch, rate) in enumerate(zip(encoder.branches, rates, strict=True)):
        assert branch.reduce.in_channels == trunk_channels + k * channels
        assert branch.reduce.out_channels == 2 * channels and branch.reduce.kernel_size == (1, 1)
        assert branch.conv.kernel_size == (3, 3) and branch.conv.out_channels == channels
        assert branch.conv.dilation == (rate, rate) and branch.conv.padding == (rate, rate)
    assert encoder.gap.in_channels == trunk_channels and encoder.gap.out_channels == channels
    assert encoder.fuse.in_channels == (len(rates) + 1) * channels
    assert encoder.fuse.out_channels == 32

    # The dense connections are real: branch k reads the trunk and every earlier output.
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [b.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
             for b in encoder.branches]
    with torch.no_grad():
        features = encoder.trunk_features(_image(128))
        encoder.multi_scale(features)
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(rates)
    for k, (inputs, _) in enumerate(seen):
        assert inputs.shape == (1, trunk_channels + k * channels, 16, 16)
        torch.testing.assert_close(inputs[:, :trunk_channels], features)
        for j in range(k):
            part = inputs[:, trunk_channels + j * channels:trunk_channels + (j + 1) * channels]
            assert torch.equal(part, seen[j][1])


# 4. Global-average-pooling branch --------------------------------------------------------


def test_gap_branch_carries_a_far_corner_to_the_opposite_corner() -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(trunk_stages=2, branch_channels=16, out_channels=16,
                           out_resolution=16).eval()
    with torch.no_grad():
        for branch in encoder.branches:  # dilated branches now output a constant (zero)
            branch.conv.weight.zero_()
        image = _image(128)
        changed = image.clone()
        changed[:, :, :32, :32] = 1.0 - changed[:, :, :32, :32]  # top-left corner
        features, changed_features = encoder.trunk_features(image), encoder.trunk_features(changed)
        before, after = encoder.multi_scale(features), encoder.multi_scale(changed_features)
        torch.testing.assert_close(before, encoder(image))
        difference = (after[..., -1, -1] - before[..., -1, -1]).abs().max()  # bottom-right
        assert difference > 1e-4 * before.abs().max()
        encoder.gap.weight.zero_()  # without the GAP path nothing carries it
        assert torch.equal(encoder.multi_scale(features)[..., -1, -1],
                           encoder.multi_scale(changed_features)[..., -1, -1])


# 5. Parameter groups and gradients -------------------------------------------------------


def test_backbone_parameters_are_the_trunk_and_gradients_reach_image_and_trunk() -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(trunk_stages=2, branch_channels=16, out_channels=16,
                           out_resolution=16)
    backbone = encoder.backbone_parameters()
    assert len(backbone) == len(list(encoder.trunk.parameters()))
    assert {id(p) for p in backbone} == {id(p) for p in encoder.trunk.parameters()}
    head = [p for name, p in encoder.named_parameters() if not name.startswith("trunk.")]
    assert head and not {id(p) for p in head} & {id(p) for p in backbone}
    assert len(backbone) + len(head) == len(list(encoder.parameters()))

    image = _image(128).requires_grad_(True)
    out = encoder(image)
    (out * torch.randn_like(out)).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    assert image.grad.abs().sum() > 0
    for name, param in encoder.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert encoder.trunk.conv1.weight.grad.abs().sum() > 0
    assert encoder.trunk.layer2[-1].conv3.weight.grad.abs().sum() > 0


def test_a_crops_features_do_not_depend_on_its_batch_from_construction_on() -> None:
    # The trunk's BatchNorm uses its stored statistics from the start (not only after a
    # .train() call): a crop's features are the same alone or among others, and the
    # running statistics never move, in training as in evaluation.
    torch.manual_seed(0)
    encoder = ImageEncoder(trunk_stages=2, branch_channels=4, out_channels=8,
                           out_resolution=8)
    assert encoder.training and not encoder.trunk.training
    stats = {k: v.clone() for k, v in encoder.trunk.state_dict().items()}
    crops = _image(64, batch=3, seed=1)
    with torch.no_grad():
        together = encoder(crops)
        alone = encoder(crops[1:2])
    torch.testing.assert_close(alone[0], together[1], rtol=1e-5, atol=1e-5)
    for key, value in encoder.trunk.state_dict().items():
        assert torch.equal(value, stats[key]), key
