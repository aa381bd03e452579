"""dwcy.models.MobileNetV2: against the same network built from dwcy.reference, its weights file, its errors, and
(when torch is installed) against PyTorch through the state_dict converter.

Most checks run on small images (the network takes any size; 64x64 ends in 2x2 before the pooling) so the float64
reference stays fast; one runs at 224x224, the size of the benchmarks.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import _guard
from dwcy import kernels, models
from dwcy._layers import NetworkLayer
from dwcy.models import STRIDES, MobileNetV2, convert_torch_state_dict

# torchvision's mobilenet_v2: 3,504,872 parameters, of which 2 x 17,056 are batch norms' scales and shifts; folded,
# each batch norm leaves one bias per channel.
TORCHVISION_PARAMETERS = 3_504_872
BATCHNORM_CHANNELS = 17_056


@pytest.fixture(scope="module")
def model():
    return MobileNetV2.random(seed=1)


def images(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_logits_close(actual, expected, rtol=1e-4):
    """Within float32 rounding of a ~53-layer network whose logits are O(1) (observed: ~5e-6 off)."""
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def im2col_oracle(x, kernel, stride, padding):
    """The patches by NumPy slicing of a zero-padded copy: (N, OH, OW, K*K*C), taps in (kh, kw, c) order."""
    n, h, w, c = x.shape
    padded = np.zeros((n, h + 2 * padding, w + 2 * padding, c), x.dtype)
    padded[:, padding:padding + h, padding:padding + w] = x
    out_h, out_w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    out = np.empty((n, out_h, out_w, kernel * kernel * c), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = padded[:, i * stride:i * stride + kernel, j * stride:j * stride + kernel].reshape(n, -1)
    return out


# (N, H, W, C, kernel, stride, padding): the stem's, a kernel wider than the image, strides past the kernel, no
# padding, one pixel, one channel.
IM2COL_CASES = [(2, 9, 7, 3, 3, 2, 1), (1, 5, 5, 2, 5, 1, 2), (1, 1, 1, 3, 3, 1, 1), (3, 8, 8, 4, 3, 3, 0),
                (1, 4, 6, 1, 1, 1, 0), (1, 3, 3, 3, 7, 2, 3), (2, 16, 13, 3, 3, 2, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", IM2COL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_im2col_matches_numpy(case, dtype):
    """The stem's patches (models._im2col, an OpenMP kernel) equal NumPy's slicing bit for bit, at any thread
    count, from a non-contiguous input too."""
    n, h, w, c, kernel, stride, padding = case
    x = images((n, h, w, c), dtype=dtype)
    expected = im2col_oracle(x, kernel, stride, padding)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(models._im2col(x, kernel, stride, padding, threads), expected)
    wide = images((n, h, 2 * w, c), seed=1, dtype=dtype)
    np.testing.assert_array_equal(models._im2col(wide[:, :, ::2], kernel, stride, padding, 2),
                                  im2col_oracle(wide[:, :, ::2], kernel, stride, padding))


@pytest.mark.skipif(not _guard.SUPPORTED, reason="guard pages need Linux mmap/mprotect")
@pytest.mark.parametrize("case", IM2COL_CASES[:4], ids=lambda c: "x".join(map(str, c)))
def test_im2col_stays_inside_its_arrays(case, tmp_path):
    """The patch kernel against guard pages (tests/_guard.py): no byte read or written outside x and out."""
    n, h, w, c, kernel, stride, padding = case
    x = images((n, h, w, c))
    expected = im2col_oracle(x, kernel, stride, padding)
    kwargs = dict(kernel=kernel, stride=stride, padding=padding, num_threads=2)
    results = _guard.run_guarded("kernels.im2col", dict(x=x), kwargs, expected.shape, expected.dtype, str(tmp_path))
    for at, result in results.items():
        np.testing.assert_array_equal(result, expected, f"arrays against a guard page at their {at}")


@pytest.mark.parametrize("shape", [(2, 64, 64, 3), (1, 57, 45, 3), (1, 224, 224, 3)],
                         ids=["2x64x64", "1x57x45", "1x224x224"])
def test_matches_reference(model, shape):
    """The dwcy model against the slow path made of dwcy.reference only, on the same (float32) weights in float64:
    every layer's stride, padding, activation and skip connection."""
    x = images(shape)
    logits = model(x)
    assert logits.shape == (shape[0], 1000) and logits.dtype == np.float32
    exact = model.astype(np.float64).forward_reference(x.astype(np.float64))
    assert_logits_close(logits, exact)
    assert_logits_close(model.forward_reference(x), exact)  # the float32 reference path, too
    assert np.abs(exact).max() > 0.5, "logits should be O(1) with the random weights"


def test_float64(model):
    x = images((2, 40, 40, 3), dtype=np.float64)
    model64 = model.astype(np.float64)
    logits = model64(x)
    assert logits.dtype == np.float64
    assert_logits_close(logits, model64.forward_reference(x), rtol=1e-10)


def test_stages_match_reference(model):
    """Stage by stage (what the profile times), so a failure names the stage."""
    y = images((1, 48, 48, 3))
    for stage in model.stages:
        expected = model.reference_stage(stage, y)
        got = model.run_stage(stage, y)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(np.abs(expected).max(), 1),
                                   err_msg=stage.name)
        y = got


def test_threads_bitwise_and_batch_rows(model):
    x = images((3, 48, 48, 3), seed=2)
    one = model(x, num_threads=1)
    assert np.array_equal(one, model(x, num_threads=2))
    assert np.array_equal(one, MobileNetV2(model.arrays(), num_threads=2)(x))
    for i in range(3):  # an image's logits do not depend on the others in its batch, to the bit
        assert np.array_equal(model(x[i:i + 1]), one[i:i + 1])


def test_passes(model, monkeypatch):
    """A batch goes through the network in passes of a few images (_PASS_BYTES_PER_THREAD), at least one per
    thread: the logits are the same, bit for bit, whatever the passes."""
    assert model._images_per_pass((8, 224, 224, 3), 1) == 1  # 4.8 MB of float32 at most an image
    assert model._images_per_pass((8, 224, 224, 3), 3) == 3
    assert model._images_per_pass((8, 160, 160, 3), 2) == 4  # 2.5 MB
    assert model.astype(np.float64)._images_per_pass((8, 160, 160, 3), 2) == 2
    x = images((5, 40, 40, 3), seed=3)
    assert model._images_per_pass(x.shape, 1) >= 5
    whole = model(x, num_threads=1)
    monkeypatch.setattr(models, "_PASS_BYTES_PER_THREAD", 0)
    assert model._images_per_pass(x.shape, 2) == 2
    assert np.array_equal(model(x, num_threads=1), whole)  # five passes of one image
    assert np.array_equal(model(x, num_threads=2), whole)  # two, two, one


def test_work_array(model, monkeypatch):
    """Large expansions go to a work array kept per model and thread (normally from 32 MiB: passes of 7 images
    and more at 224x224, on 7 threads or more); here every expansion does, with batches that grow and shrink, from
    two threads at once."""
    inputs = [images((n, 32, 32, 3), seed=n) for n in (1, 3, 2)]
    fresh = [model(x) for x in inputs]
    monkeypatch.setattr(models, "_SCRATCH_BYTES", 0)
    assert all(np.array_equal(model(x), y) for x, y in zip(inputs, fresh))
    with ThreadPoolExecutor(2) as pool:
        for _ in range(2):
            results = list(pool.map(lambda x: model(x, num_threads=1), inputs * 2))
            assert all(np.array_equal(got, y) for got, y in zip(results, fresh * 2))


def test_structure(model):
    """The weights file's names and shapes (the layout the docs give) and the network's shape."""
    arrays = model.arrays()
    assert arrays["features.0.weight"].shape == (3, 3, 3, 32)
    assert "features.1.expand.weight" not in arrays and arrays["features.1.depthwise.weight"].shape == (3, 3, 32)
    assert arrays["features.1.project.weight"].shape == (32, 16)
    assert arrays["features.2.expand.weight"].shape == (16, 96)
    assert arrays["features.17.project.weight"].shape == (960, 320)
    assert arrays["features.18.weight"].shape == (320, 1280)
    assert arrays["classifier.weight"].shape == (1280, 1000) and arrays["classifier.bias"].shape == (1000,)
    assert len(arrays) == 2 + 2 * (3 * 17 - 1) + 2 + 2
    assert sum(a.size for a in arrays.values()) == TORCHVISION_PARAMETERS - BATCHNORM_CHANNELS
    assert [s.name for s in model.stages] == [f"features.{i}" for i in range(19)] + ["classifier"]
    assert [s.layers[-2].stride for s in model.stages[1:18]] == list(STRIDES)
    residual = [s.name for s in model.stages if s.residual]
    assert residual == [f"features.{i}" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]
    assert 0.59e9 < model.flops() < 0.61e9


def test_random_is_seeded():
    a, b = MobileNetV2.random(seed=3), MobileNetV2.random(seed=3)
    assert all(np.array_equal(a.arrays()[k], b.arrays()[k]) for k in a.arrays())
    c = MobileNetV2.random(seed=4)
    assert not np.array_equal(a.arrays()["features.0.weight"], c.arrays()["features.0.weight"])
    assert MobileNetV2.random(seed=3, num_classes=10)(images((1, 32, 32, 3))).shape == (1, 10)


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "mobilenetv2.npz"
    model.save(path)
    loaded = MobileNetV2.load(path)
    assert loaded.dtype == np.float32
    assert set(loaded.arrays()) == set(model.arrays())
    assert all(np.array_equal(loaded.arrays()[k], model.arrays()[k]) for k in model.arrays())
    x = images((1, 64, 64, 3))
    assert np.array_equal(loaded(x), model(x))
    with np.load(path) as f:  # the file is plain NumPy: one array per documented name
        assert f["features.2.expand.weight"].shape == (16, 96)
    assert MobileNetV2.load(path, dtype=np.float64).dtype == np.float64


def test_bad_weights(model):
    arrays = dict(model.arrays())
    missing = {k: v for k, v in arrays.items() if k != "features.5.depthwise.bias"}
    with pytest.raises(ValueError, match="features.5.depthwise.bias"):
        MobileNetV2(missing)
    with pytest.raises(ValueError, match="features.3.project.weight.*shape"):
        MobileNetV2({**arrays, "features.3.project.weight": arrays["features.3.project.weight"][:-1]})
    with pytest.raises(ValueError, match="unexpected.*features.30.expand.weight"):
        MobileNetV2({**arrays, "features.30.expand.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(TypeError, match="dtype"):
        MobileNetV2(arrays, dtype=np.int32)


def test_bad_input(model):
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        model(np.zeros((1, 3, 32, 32), np.float32))  # NCHW
    with pytest.raises(ValueError, match="x"):
        model(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        model(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one image"):
        model(np.zeros((0, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="too small"):
        model(np.zeros((1, 0, 0, 3), np.float32))
    with pytest.raises(ValueError, match="num_threads"):
        model(np.zeros((1, 32, 32, 3), np.float32), num_threads=0)


def test_run_stage_converts_or_rejects_its_input(model):
    """A stage on its own takes what the model takes: floats, converted to the model's dtype; anything else is a
    TypeError (an int32 input once reached the stem's patch kernel as if it were float64)."""
    stem = model.stages[0]
    x = images((1, 32, 32, 3))
    expected = model.run_stage(stem, x)
    np.testing.assert_array_equal(model.run_stage(stem, x.astype(np.float16).astype(np.float32)),
                                  model.run_stage(stem, x.astype(np.float16)))
    assert expected.dtype == np.float32
    for dtype in (np.int32, np.int8, np.uint8):
        with pytest.raises(TypeError, match=f"expected a float array.*{np.dtype(dtype).name}"):
            model.run_stage(stem, x.astype(dtype))


def test_im2col_rejects_arrays_it_cannot_use():
    """The patch kernel checks what it reads and writes itself: one float dtype, C-contiguous 4-D arrays, and an
    out whose batch and last dimension fit x's patches; else an error, and out untouched."""
    x, out = images((1, 8, 8, 3)), np.full((1, 4, 4, 27), -1.0, np.float32)
    bad = [(TypeError, "share a dtype", x.astype(np.int32), out.astype(np.int32)),
           (TypeError, "share a dtype", x, out.astype(np.float64)),
           (ValueError, "C-contiguous", x[:, ::2], out[:, :2]),
           (ValueError, "does not hold", x, out[..., :26].copy()),
           (ValueError, "does not hold", np.concatenate([x, x]), out)]
    for error, message, a, b in bad:
        before = b.copy()
        with pytest.raises(error, match=message):
            kernels.im2col(a, 3, 2, 1, b, 1)
        np.testing.assert_array_equal(b, before)


def test_network_layer():
    """The whole network as the benchmarks and the command line time it (dwcy._layers.NetworkLayer)."""
    layer = NetworkLayer(size=32)
    (x,) = layer.make_inputs(2)
    assert x.shape == (2, 32, 32, 3) and layer.output_shape(2) == (2, 1000)
    expected = layer.expected((x,))
    np.testing.assert_allclose(layer.run(x, num_threads=1), expected, **layer.tolerance(np.float32))
    np.testing.assert_allclose(layer.run_reference(x), expected, **layer.tolerance(np.float32))


# --- PyTorch ----------------------------------------------------------------------------------------------------------
def torch_mobilenet_v2(torch, seed=0):
    """torchvision's mobilenet_v2 rebuilt from torch.nn layers (same module tree, so the same state_dict names),
    random weights and batch norm statistics (so folding is exercised), in eval mode."""
    nn = torch.nn

    def conv_bn_relu(cin, cout, kernel=3, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            self.use_res_connect = stride == 1 and cin == cout
            layers = [conv_bn_relu(cin, hidden, 1)] if t != 1 else []
            layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                       nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            features, cin = [conv_bn_relu(3, 32, 3, 2)], 32
            for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                               (6, 160, 3, 2), (6, 320, 1, 1)):
                for i in range(n):
                    features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            features.append(conv_bn_relu(cin, 1280, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    torch.manual_seed(seed)
    net = Net()
    generator = torch.Generator().manual_seed(seed + 1)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.weight.data = 0.5 + torch.rand(c, generator=generator)
            module.bias.data = 0.1 * torch.randn(c, generator=generator)
            module.running_mean.data = 0.1 * torch.randn(c, generator=generator)
            module.running_var.data = 0.5 + torch.rand(c, generator=generator)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.05)
            nn.init.normal_(module.bias, 0, 0.1)
    return net.eval()


def test_from_torch_state_dict():
    torch = pytest.importorskip("torch", reason="torch is not installed: the converter is checked against PyTorch")
    net = torch_mobilenet_v2(torch)
    assert sum(p.numel() for p in net.parameters()) == TORCHVISION_PARAMETERS  # torchvision's network, indeed
    state_dict = net.state_dict()
    assert "features.0.1.running_var" in state_dict and "features.1.conv.0.0.weight" in state_dict
    model = MobileNetV2.from_torch_state_dict(state_dict)
    x = images((2, 224, 224, 3), seed=5)
    with torch.no_grad():
        expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()
    assert np.abs(expected).std() > 0.1, "the logits should not be near zero"
    assert_logits_close(model(x), expected, rtol=2e-4)
    assert_logits_close(model.forward_reference(x), expected, rtol=2e-4)

    # The same arrays from NumPy copies of the tensors, and with DataParallel's "module." prefix.
    arrays = convert_torch_state_dict(state_dict)
    as_numpy = convert_torch_state_dict({f"module.{k}": v.numpy() for k, v in state_dict.items()})
    assert set(arrays) == set(as_numpy) == set(model.arrays())
    assert all(np.array_equal(arrays[k], as_numpy[k]) for k in arrays)

    with pytest.raises(ValueError, match="features.7.conv.1.1.running_mean"):
        MobileNetV2.from_torch_state_dict({k: v for k, v in state_dict.items()
                                           if k != "features.7.conv.1.1.running_mean"})
    with pytest.raises(ValueError, match="unexpected.*extra.weight"):
        MobileNetV2.from_torch_state_dict({**state_dict, "extra.weight": torch.zeros(1)})
