"""Backbones and heads: the release's CIFAR stem, feature sizes, the projection head's
layers, and normalised outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from vision_benchmarks.models import ProjectionHead, build_encoder, resnet_backbone


def test_cifar_stem_is_a_3x3_stride_1_conv_without_max_pool():
    net = resnet_backbone("resnet18", cifar_stem=True, width=8)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.bias is None
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    stem = net.relu(net.bn1(net.conv1(x)))
    assert net.maxpool(stem).shape[-2:] == (32, 32)  # full resolution into layer1


def test_imagenet_stem_is_kept_when_asked():
    net = resnet_backbone("resnet18", cifar_stem=False, width=8)
    assert net.conv1.kernel_size == (7, 7) and isinstance(net.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize("arch,width,dim", [("resnet18", 64, 512), ("resnet18", 8, 64), ("resnet50", 4, 128)])
def test_feature_dimension_follows_arch_and_width(arch, width, dim):
    net = resnet_backbone(arch, width=width)
    assert net.feature_dim == dim
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, dim)


def test_full_width_resnet18_keeps_torchvisions_layers_apart_from_the_stem():
    ours = resnet_backbone("resnet18", cifar_stem=True, width=64)
    reference = resnet18()
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items() if not k.startswith(("conv1", "fc"))}
    ref_shapes = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith(("conv1", "fc"))}
    assert ours_shapes == ref_shapes


def test_projection_head_is_linear_bn_relu_linear():
    head = ProjectionHead(64, 512, 128)
    layers = list(head.net)
    assert [type(m) for m in layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert layers[0].bias is None and layers[3].bias is not None
    assert layers[0].in_features == 64 and layers[3].out_features == 128


def test_mlp_head_is_the_moco_v2_head_linear_relu_linear_with_biases_and_no_batchnorm():
    head = ProjectionHead(64, 2048, 128, kind="mlp")
    layers = list(head.net)
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert layers[0].bias is not None and (layers[0].in_features, layers[0].out_features) == (64, 2048)
    assert (layers[2].in_features, layers[2].out_features) == (2048, 128)
    enc = build_encoder("resnet50", cifar_stem=False, width=4, hidden_dim=2048, head="mlp").train()
    assert not any(isinstance(m, nn.BatchNorm1d) for m in enc.head.modules())
    h = torch.randn(4, enc.backbone.feature_dim)  # no BatchNorm: in train mode a row's projection ignores the batch
    torch.testing.assert_close(enc.head(h)[:1], enc.head(h[:1]))
    with pytest.raises(ValueError, match="unknown head 'linear'"):
        ProjectionHead(64, kind="linear")


@pytest.mark.parametrize("proj_dim", [128, 2])
def test_encoder_embeddings_lie_on_the_unit_sphere(proj_dim):
    enc = build_encoder("resnet18", width=4, proj_dim=proj_dim)
    x = torch.randn(4, 3, 32, 32)
    z = enc.embed(x)
    assert z.shape == (4, proj_dim)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(enc.features(x).norm(dim=1), torch.ones(4))


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    enc = build_encoder("resnet18", width=4).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = enc.embed(x)
    enc = enc.to(memory_format=torch.channels_last)
    torch.testing.assert_close(enc.embed(x.contiguous(memory_format=torch.channels_last)), expected,
                               atol=1e-5, rtol=1e-4)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="arch"):
        resnet_backbone("vgg11")
    with pytest.raises(ValueError, match="width"):
        resnet_backbone("resnet18", width=0)


@pytest.mark.parametrize("head", ["bn", "mlp"])
def test_projection_is_float32_under_bf16_autocast(head):
    enc = build_encoder("resnet18", width=4, head=head).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, z = enc(x)
    assert h.dtype == torch.bfloat16 and z.dtype == torch.float32
