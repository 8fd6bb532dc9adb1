"""tessera.from_torch: skipped where PyTorch is not installed."""

import numpy as np
import pytest

import tessera

torch = pytest.importorskip("torch")


class SmallCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 5)
        self.fc = torch.nn.Linear(4 * 12 * 12, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


class Sine(SmallCnn):
    def forward(self, x):
        return super().forward(torch.sin(x))


def test_an_exported_module_runs_as_in_torch():
    torch.manual_seed(0)
    module = SmallCnn()
    x = torch.randn(8, 1, 28, 28)
    model = tessera.from_torch(module, x[:1])
    assert model.input_shape == (1, 28, 28)
    expected = module(x).detach().numpy()
    np.testing.assert_allclose(model.infer(x.numpy()).f32_logits, expected, atol=1e-4)
    model.calibrate(x.numpy(), samples=8)
    with tessera.local_cluster(model, suite="serpens-n") as cluster:
        r = cluster.infer(x.numpy()[:2])
    assert np.abs(r.logits - model.infer(x.numpy()[:2]).logits).max() <= model.logit_tolerance


def test_an_unsupported_node_is_named():
    with pytest.raises(tessera.ModelError, match="Sine: Tessera refuses its ONNX export: .*node `.*`: unsupported op `Sin`"):
        tessera.from_torch(Sine(), torch.randn(1, 1, 28, 28))
