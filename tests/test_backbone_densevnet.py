"""The ``densevnet`` backbone (NiftyNet's Dense V-Net): parameter counts, TensorFlow "same" padding,
shapes, and NiftyNet checkpoints (written here in NiftyNet's variable layout) landing key for key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark.backbones.densevnet import SameConv3d, same_average_pool
from tf_checkpoint_writer import write_tf_checkpoint

from benchmark.api.registry import BACKBONES, METHODS
from benchmark.errors import UserError
from benchmark.model.backbone import count_parameters

BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
SLOTS = ("Adam", "Adam_1")


def backbone():
    return BACKBONES.create("densevnet")


def niftynet_layout(width: int, in_channels: int, classes: int) -> dict[str, tuple[tuple[int, ...], str | None]]:
    """NiftyNet's Dense V-Net variables, written out from its network code: name -> (TensorFlow shape,
    the target key it lands on, None for those dropped)."""
    def scaled(channels):
        return max(1, channels * width // 32)

    layout: dict[str, tuple[tuple[int, ...], str | None]] = {}

    def unit(scope, kernel, cin, cout, key):
        layout[f"{scope}/conv_/w"] = ((kernel,) * 3 + (cin, cout), f"{key}.conv.weight")
        layout.update({f"{scope}/bn_/{name}": ((cout,), f"{key}.bn.{torch_name}") for name, torch_name in BN.items()})

    layout.update({f"DenseVNet/batch_norm/{name}": ((in_channels,), f"encoder.stem.input_bn.{torch_name}")
                   for name, torch_name in BN.items()})
    unit("DenseVNet/conv_bn", 5, in_channels, scaled(24), "encoder.stem.conv")
    channels, links = in_channels + scaled(24), [in_channels]
    blocks = [("dense_feature_stack_block", 5, 4, 12, 24), ("dense_feature_stack_block_1", 10, 8, 24, 24),
              ("dense_feature_stack_block_2", 10, 16, 24, None)]
    for number, (scope, layers, growth, link, down) in enumerate(blocks, 1):
        for layer in range(layers):
            name = "conv_bn_relu" if layer == 0 else f"conv_bn_relu_{layer}"
            unit(f"DenseVNet/{scope}/dense_feature_stack_block/{name}", 3, channels + layer * scaled(growth),
                 scaled(growth), f"encoder.block{number}.layers.{layer}")
        features = channels + layers * scaled(growth)
        unit(f"DenseVNet/{scope}/conv_bn_relu", 3, features, scaled(link), f"decoder.skip{number}")
        links.append(scaled(link))
        if down:
            unit(f"DenseVNet/{scope}/conv_bn_relu_1", 3, features, scaled(down), f"encoder.block{number}.down")
            channels = scaled(down)
    layout["DenseVNet/conv/conv_/w"] = ((3, 3, 3, sum(links), classes), None)
    layout["DenseVNet/conv/conv_/b"] = ((classes,), None)
    layout["DenseVNet/spatial_prior_block/prior"] = ((1, 24, 24, 24, 1), None)
    return layout


def niftynet_arrays(width: int, in_channels: int = 1, classes: int = 9, slots: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(width)
    arrays = {name: rng.standard_normal(shape).astype(np.float32)
              for name, (shape, _) in niftynet_layout(width, in_channels, classes).items()}
    for name in arrays:
        if name.endswith(("moving_variance", "prior")):  # positive, as trained ones are
            arrays[name] = np.abs(arrays[name]) + 0.5
    if slots:
        arrays.update({f"{name}/{slot}": np.abs(array) for name, array in list(arrays.items())
                       if "moving_" not in name for slot in SLOTS})
        arrays.update({"global_step": np.array(3000, np.int64), "train/beta1_power": np.array(0.9, np.float32),
                       "train/beta2_power": np.array(0.999, np.float32)})
    return arrays


def as_torch(array: np.ndarray) -> torch.Tensor:
    """A TensorFlow weight in the suite's layout: kernels (A, R, S, in, out) -> (out, in, Z=S, Y=A, X=R)."""
    return torch.from_numpy(np.transpose(array, (4, 3, 2, 0, 1)) if array.ndim == 5 else array)


def test_published_width_parameter_counts_are_niftynets_defaults():
    """NiftyNet's trainable variables (BatchNorm scales and offsets included); the paper's quoted 2.60 M is
    not reproduced by NiftyNet's default hyperparameters (see the backbone's docstring)."""
    assert backbone().parameter_counts(32) == {"encoder": 662_358, "classifier": 852_823, "segmenter": 865_330}
    with torch.device("meta"):
        zoo = backbone().build_segmenter(1, 9, 32)
    assert count_parameters(zoo) == 878_514
    assert count_parameters(zoo) == sum(int(np.prod(shape)) for name, (shape, _) in niftynet_layout(32, 1, 9).items()
                                        if "moving_" not in name and "prior" not in name)


@pytest.mark.parametrize("in_channels", [1, 2])
def test_targets_run_forward_and_backward_on_the_smoke_cube(in_channels):
    torch.manual_seed(0)
    x = torch.rand(2, in_channels, 16, 32, 32)
    segmenter = backbone().build_segmenter(in_channels, 3, 4)
    logits = segmenter(x)
    assert logits.shape == (2, 3, 16, 32, 32)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in segmenter.parameters())
    classifier = backbone().build_classifier(in_channels, 5, 4)
    assert classifier(x).shape == (2, 5)
    skips, bottleneck = classifier.encoder(x)
    assert [tuple(s.shape[2:]) for s in skips] == [(8, 16, 16), (8, 16, 16), (4, 8, 8)]
    assert bottleneck.shape[1:] == (classifier.encoder.out_channels, 2, 4, 4)
    assert all(hasattr(classifier.encoder, stage) for stage in (*backbone().stem, *backbone().stages))


def tf_same_conv(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """TensorFlow's "same" convolution of one channel, by its definition: output i reads input
    ``i * stride + k - pad_before``, the padding ``max((ceil(n/s) - 1) s + k - n, 0)``, less in front."""
    size, k = x.shape[0], kernel.shape[0]
    out = -(-size // stride)
    before = max((out - 1) * stride + k - size, 0) // 2
    padded = np.zeros((size + 2 * k,) * 3)
    padded[k:k + size, k:k + size, k:k + size] = x
    result = np.zeros((out,) * 3)
    for index in np.ndindex(*result.shape):
        corner = [i * stride - before + k for i in index]
        window = padded[corner[0]:corner[0] + k, corner[1]:corner[1] + k, corner[2]:corner[2] + k]
        result[index] = (window * kernel).sum()
    return result


@pytest.mark.parametrize("size,kernel,stride", [(8, 5, 2), (7, 5, 2), (8, 3, 2), (6, 3, 1)])
def test_convolutions_pad_as_tensorflow_does(size, kernel, stride):
    rng = np.random.default_rng(size)
    x, weights = rng.standard_normal((size,) * 3), rng.standard_normal((kernel,) * 3)
    conv = SameConv3d(1, 1, kernel, stride)
    conv.weight.data = torch.from_numpy(weights[None, None]).float()
    with torch.no_grad():
        ours = conv(torch.from_numpy(x[None, None]).float())[0, 0].numpy()
    np.testing.assert_allclose(ours, tf_same_conv(x, weights, stride), atol=1e-4)


def test_the_input_pooling_averages_only_voxels_inside_as_tensorflow_does():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 4, 4, 4)
    pooled = same_average_pool(x)[0, 0]
    # windows start at 0 and 2 along each axis (TensorFlow pads 1 voxel at the end): 3 and 2 voxels inside
    for i, j, k in np.ndindex(2, 2, 2):
        window = x[0, 0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, 2 * k:2 * k + 3]
        assert pooled[i, j, k] == pytest.approx(window.mean().item())


def write(tmp_path, arrays):
    prefix = tmp_path / "models" / "model.ckpt-3000"
    write_tf_checkpoint(prefix, arrays)
    (prefix.parent / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-3000"\n')
    return prefix


@pytest.mark.parametrize("width,slots", [(8, True), (32, False)])
def test_a_niftynet_checkpoint_lands_key_for_key(tmp_path, width, slots):
    arrays = niftynet_arrays(width, slots=slots)
    prefix = write(tmp_path, arrays)
    for path in (prefix, prefix.parent, prefix.with_name(prefix.name + ".index")):
        weights = backbone().read_weights(path)
        assert (weights.width, weights.in_channels, weights.transfers) == (width, 1, "encoder+decoder")
    segmenter = backbone().build_segmenter(1, 2, width)
    target = segmenter.state_dict()
    expected = {key for key in target if not key.startswith("decoder.out.")}
    assert set(weights.state_dict) == expected
    landed = {key: name for name, (_, key) in niftynet_layout(width, 1, 9).items() if key is not None}
    for key, tensor in weights.state_dict.items():
        if key.endswith("num_batches_tracked"):
            assert tensor.item() == 0
        else:
            assert torch.equal(tensor, as_torch(arrays[landed[key]])), key
    missing, unexpected = segmenter.load_state_dict(weights.state_dict, strict=False)
    assert sorted(missing) == ["decoder.out.bias", "decoder.out.weight"] and not unexpected
    classifier = backbone().build_classifier(1, 3, width)
    classifier.load_state_dict({k: v for k, v in weights.state_dict.items() if k.startswith("encoder.")},
                               strict=False)
    assert torch.equal(classifier.encoder.block3.layers[9].conv.weight,
                       as_torch(arrays["DenseVNet/dense_feature_stack_block_2/dense_feature_stack_block/"
                                       "conv_bn_relu_9/conv_/w"]))
    dropped = ["DenseVNet/conv/conv_/b", "DenseVNet/conv/conv_/w", "DenseVNet/spatial_prior_block/prior"]
    if slots:
        dropped += ["global_step", "train/beta1_power", "train/beta2_power"]
    assert weights.notes["dropped"] == dropped
    trainable = [name for name in niftynet_layout(width, 1, 9) if "moving_" not in name]
    assert weights.notes["optimizer_slots_dropped"] == (len(SLOTS) * len(trainable) if slots else 0)


@pytest.mark.parametrize("change,named", [
    (lambda arrays: arrays.pop("DenseVNet/dense_feature_stack_block_1/conv_bn_relu/bn_/moving_variance"),
     "missing key(s): DenseVNet/dense_feature_stack_block_1/conv_bn_relu/bn_/moving_variance"),
    (lambda arrays: arrays.update({"DenseVNet/extra/w": np.zeros(3, np.float32)}),
     "unexpected key(s): DenseVNet/extra/w"),
    (lambda arrays: arrays.update({"DenseVNet/extra/w/Adam": np.zeros(3, np.float32)}),
     "unexpected key(s): DenseVNet/extra/w/Adam"),
    (lambda arrays: arrays.update({"DenseVNet/dense_feature_stack_block/conv_bn_relu_1/conv_/w":
                                   np.zeros((3, 3, 3, 5, 2), np.float32)}),
     "mis-shaped key(s) (file vs model): DenseVNet/dense_feature_stack_block/conv_bn_relu_1/conv_/w (3, 3, 3, 5, 2)"),
    (lambda arrays: arrays.pop("DenseVNet/conv_bn/conv_/w"), "first convolution DenseVNet/conv_bn/conv_/w is missing"),
    (lambda arrays: arrays.update({"DenseVNet/batch_norm/gamma": np.array([np.nan], np.float32)}),
     "DenseVNet/batch_norm/gamma holds non-finite values"),
    (lambda arrays: arrays.update({"DenseVNet/conv_bn/bn_/moving_variance": -arrays[
        "DenseVNet/conv_bn/bn_/moving_variance"]}), "variance DenseVNet/conv_bn/bn_/moving_variance holds negative"),
])
def test_a_file_that_does_not_match_is_refused_naming_the_variable(tmp_path, change, named):
    arrays = niftynet_arrays(4)
    change(arrays)
    prefix = write(tmp_path, arrays)
    with pytest.raises(UserError) as error:
        backbone().read_weights(prefix)
    assert named in str(error.value) and str(error.value).startswith(str(prefix))


def test_other_files_are_read_as_the_suites_own_checkpoints(tmp_path):
    model = backbone().build_segmenter(1, 1, 4)
    checkpoint = tmp_path / "pretrained.pt"
    torch.save({"format": 1, "backbone": {"name": "densevnet", "width": 4, "in_channels": 1, "settings": {}},
                "transfers": "encoder+decoder", "state_dict": model.state_dict()}, checkpoint)
    weights = backbone().read_weights(checkpoint)
    assert (weights.format, weights.width) == ("benchmark-checkpoint", 4)
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(UserError, match="reads no released weight files"):
        backbone().read_weights(plain)


def test_the_niftynet_method_transfers_the_released_network_only():
    method = METHODS.create("niftynet")
    assert (method.transfers, method.backbones) == ("encoder+decoder", ("densevnet",))
    assert "dense_vnet_abdominal_ct" in method.weights_required
