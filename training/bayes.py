"""Train, evaluate and export the Bayesian models of suite bayes, by Bayes-by-backprop.

    python training/bayes.py MODEL [--epochs N] [--data DIR] [--out models/]

MODEL is one of: bayes-minionn-mnist, bayes-pneumonia-cnn (the architectures, data, normalization
and augmentation of minionn-mnist and pneumonia-cnn in train.py).

Every convolution and FC layer has a factorized Gaussian posterior: a mean and a standard
deviation sigma = softplus(rho) per weight and per bias. Training minimizes, per minibatch,
cross-entropy under one weight sample (reparameterization, sampled per minibatch) plus
BETA * KL(q || prior) / (training images), with the prior N(0, PRIOR_SIGMA^2) per parameter;
BETA < 1 tempers the KL term (a small training set makes the untempered posterior so wide
that single samples lose accuracy). Batch normalization layers stay deterministic.

Export: the mean network as ordinary ONNX (opset 17), exactly like train.py's models, plus one
extra initializer per Bayesian tensor, named "<initializer>.sigma", holding the standard
deviations of the tensor it names, transformed like it (the exporter folds batch normalization
into the convolutions, so a folded weight's sigma is scaled by the same per-channel factor).
The "tessera" metadata also records the posterior recipe and the measured accuracies: of the
mean network, of single samples, and of the meta-prediction (mean softmax over S samples).
"""

import argparse
import json
import math
import os
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

import train as base

PRIOR_SIGMA = 0.1
BETA = 0.1
RHO_INIT = -6.0
META_SAMPLES = [1, 2, 4, 8]


class Gaussian(nn.Module):
    """A factorized Gaussian over one tensor: mean and rho (sigma = softplus(rho))."""

    def __init__(self, mean):
        super().__init__()
        self.mu = nn.Parameter(mean.detach().clone())
        self.rho = nn.Parameter(torch.full_like(mean, RHO_INIT))

    def sigma(self):
        return F.softplus(self.rho)

    def sample(self):
        return self.mu + self.sigma() * torch.randn_like(self.mu)

    def kl(self):
        s = self.sigma()
        return (torch.log(PRIOR_SIGMA / s) + (s ** 2 + self.mu ** 2) / (2 * PRIOR_SIGMA ** 2) - 0.5).sum()


class BayesLayer(nn.Module):
    """Wraps an nn.Conv2d or nn.Linear: samples its weight and bias on every forward pass."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.weight = Gaussian(layer.weight)
        self.bias = Gaussian(layer.bias)
        self.use_mean = False

    def forward(self, x):
        w, b = (self.weight.mu, self.bias.mu) if self.use_mean else (self.weight.sample(), self.bias.sample())
        if isinstance(self.layer, nn.Conv2d):
            return F.conv2d(x, w, b, self.layer.stride, self.layer.padding)
        return F.linear(x, w, b)

    def kl(self):
        return self.weight.kl() + self.bias.kl()


def bayesian(net):
    """Replaces every Conv2d/Linear of `net` by a BayesLayer; returns them in module order."""
    layers = []
    for name, child in list(net.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            wrapped = BayesLayer(child)
            setattr(net, name, wrapped)
            layers.append(wrapped)
    return layers


RECIPES = {
    "bayes-minionn-mnist": dict(base.RECIPES["minionn-mnist"], epochs=60),
    "bayes-pneumonia-cnn": dict(base.RECIPES["pneumonia-cnn"], epochs=40),
}


def predict(net, layers, x, samples, use_mean=False, batch=500):
    """Mean softmax over `samples` forward passes (fresh weights per pass and batch)."""
    net.eval()
    for l in layers:
        l.use_mean = use_mean
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            probs = sum(F.softmax(net(x[i:i + batch]), 1) for _ in range(samples)) / samples
            out.append(probs)
    for l in layers:
        l.use_mean = False
    return torch.cat(out)


def accuracies(net, layers, x, y):
    torch.manual_seed(99)
    acc = {"mean": (predict(net, layers, x, 1, use_mean=True).argmax(1) == y).float().mean().item()}
    for s in META_SAMPLES:
        acc[f"S={s}"] = (predict(net, layers, x, s).argmax(1) == y).float().mean().item()
    return acc


def train(name, data_dir, out_dir, epochs=None):
    r = RECIPES[name]
    torch.manual_seed(1234)
    np.random.seed(1234)
    gen = torch.Generator().manual_seed(1234)
    train_x, train_y, test_x, test_y = r["data"](data_dir)
    xtr, ytr = base.normalize(train_x, r["mean"], r["std"]), torch.from_numpy(train_y)
    xte, yte = base.normalize(test_x, r["mean"], r["std"]), torch.from_numpy(test_y)
    epochs = epochs or r["epochs"]
    net = r["net"]()
    layers = bayesian(net)
    opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=0.0)
    steps = (len(xtr) + r["batch"] - 1) // r["batch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=epochs * steps, pct_start=0.15)
    ckpt = os.path.join(base.HERE, "checkpoints", f"{name}.pt")
    start = base.resume(ckpt, name, epochs, net, opt, sched, gen)
    for epoch in range(start, epochs):
        net.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        total = kl_total = 0.0
        for i in range(steps):
            idx = perm[i * r["batch"]:(i + 1) * r["batch"]]
            xb = base.augment(xtr[idx], r["aug"], gen)
            kl = sum(l.kl() for l in layers)
            loss = F.cross_entropy(net(xb), ytr[idx]) + BETA * kl / len(xtr)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            kl_total += kl.item()
        msg = ""
        if epoch % 10 == 9 or epoch == epochs - 1:
            msg = " " + json.dumps({k: round(v, 4) for k, v in accuracies(net, layers, xte, yte).items()})
        sig = torch.cat([l.weight.sigma().flatten() for l in layers])
        print(f"[{name}] epoch {epoch + 1}/{epochs} loss {total / steps:.4f} kl {kl_total / steps:.0f} "
              f"median sigma {sig.median().item():.4f}{msg} ({time.time() - t0:.0f} s)", flush=True)
        base.checkpoint(ckpt, epoch, epochs, net, opt, sched, gen)
    acc = accuracies(net, layers, xte, yte)
    export(net, layers, name, r, acc, len(xte), epochs, out_dir)
    print(f"[{name}] exported; PyTorch test accuracy on {len(xte)} images: {acc}", flush=True)


def export(net, layers, name, r, acc, n_test, epochs, out_dir):
    # The mean network with plain layers, exported exactly like train.py's models.
    plain = r["net"]()
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith(".weight.mu") or key.endswith(".bias.mu"):
            state[key.replace(".weight.mu", ".weight").replace(".bias.mu", ".bias")] = value
        elif ".rho" not in key and ".layer." not in key:
            state[key] = value
    state = {k.replace(".layer", ""): v for k, v in state.items()}
    plain.load_state_dict(state)
    base.export(plain, name, r, acc["mean"], n_test, epochs, out_dir)
    path = os.path.join(out_dir, f"{name}.onnx")
    model = onnx.load(path)
    # Conv/Gemm nodes appear in module order; folded batch norms scale their channels.
    linear_nodes = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(linear_nodes) == len(layers), "one ONNX node per Bayesian layer"
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node, layer in zip(linear_nodes, layers):
        mu_w = layer.weight.mu.detach().numpy()
        w = init[node.input[1]]
        # Per-output-channel factor of the folding (1 where nothing was folded).
        flat_w, flat_mu = w.reshape(w.shape[0], -1), mu_w.reshape(mu_w.shape[0], -1)
        at = np.abs(flat_mu).argmax(1)
        rows = np.arange(len(at))
        scale = flat_w[rows, at].astype(np.float64) / flat_mu[rows, at]
        exact = np.allclose(w, mu_w * scale.reshape((-1,) + (1,) * (w.ndim - 1)), rtol=1e-4, atol=1e-6)
        assert exact, f"{node.name}: exported weights are not a per-channel scaling of the means"
        shape = (-1,) + (1,) * (w.ndim - 1)
        sw = layer.weight.sigma().detach().numpy() * np.abs(scale).reshape(shape)
        sb = layer.bias.sigma().detach().numpy() * np.abs(scale)
        model.graph.initializer.append(numpy_helper.from_array(sw.astype(np.float32), node.input[1] + ".sigma"))
        model.graph.initializer.append(numpy_helper.from_array(sb.astype(np.float32), node.input[2] + ".sigma"))
    meta = json.loads(model.metadata_props[0].value)
    meta["posterior"] = dict(
        method="Bayes-by-backprop, factorized Gaussian per weight and bias",
        prior_sigma=PRIOR_SIGMA, kl_weight=BETA, rho_init=RHO_INIT,
        sidecar="initializer '<name>.sigma' beside each Bayesian initializer",
        pytorch_test_accuracy={k: round(v, 4) for k, v in acc.items()})
    meta["recipe"] = meta["recipe"].replace(", label smoothing 0.05", "") + f", KL weight {BETA}"
    model.metadata_props[0].value = json.dumps(meta)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=list(RECIPES) + ["all"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--data", default=base.DEFAULT_DATA)
    p.add_argument("--out", default=os.path.join(base.REPO, "models"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name in (RECIPES if a.model == "all" else [a.model]):
        train(name, a.data, a.out, a.epochs)


if __name__ == "__main__":
    main()
