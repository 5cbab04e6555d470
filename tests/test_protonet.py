"""ProtoNet (docs/METHOD.md §6)."""
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from stmask_d2.config import add_stmask_config
from stmask_d2.modeling.heads import build_protonet
from stmask_d2.modeling.heads.protonet import ProtoNet


def test_protonet_shapes_and_layout():
    cfg = get_cfg()
    add_stmask_config(cfg)
    net = build_protonet(cfg, ShapeSpec(channels=256, stride=8))
    convs = [m for m in net.proto_net if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4 + [(1, 1)]
    assert convs[-1].out_channels == 32 and all(torch.all(c.bias == 0) for c in convs)
    # Yolact's proto_net indices: convs at 0, 2, 4, 8, 10 (6 = upsample)
    assert sorted({k.split(".")[1] for k in net.state_dict()}, key=int) == ["0", "2", "4", "8", "10"]
    with torch.no_grad():
        out = net(torch.randn(1, 256, 12, 20))
    assert out.shape == (1, 32, 24, 40) and (out >= 0).all()


def test_protonet_function():
    torch.manual_seed(0)
    net = ProtoNet(in_channels=4, conv_dim=6, num_convs=1, mask_dim=3)
    x = torch.randn(2, 4, 5, 7)
    s = net.proto_net
    y = torch.relu(s[0](x))
    y = torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
    y = s[6](torch.relu(s[4](y)))
    torch.testing.assert_close(net(x), torch.relu(y))
    net(x).sum().backward()
    assert s[0].weight.grad is not None
