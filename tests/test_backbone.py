"""The Models Genesis 3D U-Net: parameter counts, released key names, shapes, initialisations."""

import math

import pytest
import torch

from benchmark.model import init
from benchmark.model.backbone import ClassificationHead, Classifier, Encoder, UNet3D, count_parameters


def test_full_width_parameter_counts_match_the_released_and_keras_models():
    assert count_parameters(UNet3D()) == 19_073_665
    assert count_parameters(UNet3D(transposed=False)) == 16_320_257


def test_state_dict_has_the_released_layout_under_encoder_and_decoder():
    keys = list(UNet3D().state_dict())
    assert len(keys) == 106
    stripped = {k.split(".", 1)[1] for k in keys}
    for name in ("down_tr64.ops.0.conv1.weight", "down_tr64.ops.0.bn1.running_mean",
                 "down_tr512.ops.1.bn1.num_batches_tracked", "up_tr256.up_conv.weight",
                 "up_tr64.ops.1.conv1.bias", "out_tr.final_conv.bias"):
        assert name in stripped


@pytest.mark.parametrize("transposed", [True, False])
def test_segmentation_output_has_the_input_shape(transposed):
    model = UNet3D(in_channels=4, out_channels=1, width=4, transposed=transposed)
    assert model(torch.rand(2, 4, 16, 32, 24)).shape == (2, 1, 16, 32, 24)


def test_classifier_outputs_one_logit_per_cube_and_shares_the_encoder_layout():
    model = Classifier(Encoder(1, 4), ClassificationHead(16 * 4, 3))
    assert model(torch.rand(2, 1, 16, 32, 32)).shape == (2, 3)
    assert model.head.fc1.in_features == 16 * 4 and model.head.fc1.out_features == 1024
    assert set(model.encoder.state_dict()) == set(UNet3D(width=4).encoder.state_dict())


def test_eval_mode_uses_running_statistics_so_predictions_do_not_depend_on_the_batch():
    model = UNet3D(width=4).eval()
    x = torch.rand(3, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x)[:1], model(x[:1]), atol=1e-6)


@pytest.mark.parametrize("name,bound", [
    ("he_uniform", lambda fan_in, fan_out: math.sqrt(6 / fan_in)),
    ("glorot_uniform", lambda fan_in, fan_out: math.sqrt(6 / (fan_in + fan_out))),
    ("uniform", lambda fan_in, fan_out: 0.05),
])
def test_keras_initialisations_have_the_exact_bounds(name, bound):
    model = UNet3D(width=8)
    getattr(init, name)(model)
    conv = model.encoder.down_tr128.ops[0].conv1  # 16 -> 16 channels, 3x3x3
    limit = bound(16 * 27, 16 * 27)
    assert conv.weight.abs().max() <= limit
    assert conv.weight.abs().max() > 0.95 * limit
    assert conv.weight.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)
    assert torch.all(conv.bias == 0)
    bn = model.encoder.down_tr128.ops[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    up = model.decoder.up_tr256.up_conv  # ConvTranspose3d weight (in, out, 2, 2, 2)
    assert up.weight.abs().max() <= bound(up.weight.shape[1] * 8, up.weight.shape[0] * 8)
