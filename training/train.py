"""Train, evaluate and export Tessera's benchmark models.

    python training/train.py MODEL [--epochs N] [--data DIR] [--out models/]
    python training/train.py all
    python training/train.py evalsets          # the small in-repo evaluation sets and sample images

MODEL is one of: minionn-mnist, lenet-mnist, minionn-fashion, pneumonia-cnn, minionn-cifar,
resnet20-cifar, vgg-mnist, mobilenet-cifar. Every run is seeded; long runs checkpoint each epoch
under training/checkpoints/ and resume from there when restarted. The exported ONNX (opset 17, static shapes, batch dimension
named "batch") carries Tessera's metadata under the key "tessera" as JSON: dataset, class names,
per-channel normalization, the input shape and the measured PyTorch test accuracy.
"""

import argparse
import gzip
import io
import json
import os
import struct
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data")
CACHE = os.environ.get("TESSERA_DATA_CACHE", os.path.join(HERE, ".cache"))

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle-boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
PNEUMONIA_CLASSES = ["normal", "pneumonia"]


# ----------------------------------------------------------------------------------------------
# Data

def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def load_mnist(data_dir):
    rows = np.loadtxt(gzip.open(os.path.join(data_dir, "mnist", "mnist_5k_train_subset.csv.gz")),
                      delimiter=",", dtype=np.int64)
    train_x = rows[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    train_y = rows[:, 784]
    test_x = read_idx(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz"))[:, None]
    test_y = read_idx(os.path.join(data_dir, "mnist", "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    return train_x, train_y, test_x, test_y


def fashion_train_dir():
    """The full Fashion-MNIST training set from Debian's `dataset-fashion-mnist` package."""
    candidates = [os.environ.get("FASHION_MNIST_DIR", ""), "/usr/share/datasets/fashion-mnist",
                  os.path.join(CACHE, "fashion-mnist", "usr", "share", "datasets", "fashion-mnist")]
    for c in candidates:
        if c and os.path.exists(os.path.join(c, "train-images-idx3-ubyte.gz")):
            return c
    sys.exit("Fashion-MNIST training set not found: `apt-get install dataset-fashion-mnist`, or "
             "`apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb "
             f"{os.path.join(CACHE, 'fashion-mnist')}`")


def load_fashion(data_dir):
    train = fashion_train_dir()
    train_x = read_idx(os.path.join(train, "train-images-idx3-ubyte.gz"))[:, None]
    train_y = read_idx(os.path.join(train, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    test_x = read_idx(os.path.join(data_dir, "fashion-mnist", "t10k-images-idx3-ubyte.gz"))[:, None]
    test_y = read_idx(os.path.join(data_dir, "fashion-mnist", "t10k-labels-idx1-ubyte.gz"))
    return train_x, train_y, test_x, test_y.astype(np.int64)


def load_pneumonia(data_dir):
    z = np.load(os.path.join(data_dir, "medmnist", "pneumoniamnist_balanced_3166.npz"))
    # Train on train + val; report on the held-out test split.
    train_x = np.concatenate([z["train_images"], z["val_images"]])[:, None]
    train_y = np.concatenate([z["train_labels"], z["val_labels"]]).reshape(-1).astype(np.int64)
    return train_x, train_y, z["test_images"][:, None], z["test_labels"].reshape(-1).astype(np.int64)


def load_cifar_test(data_dir):
    raw = np.fromfile(os.path.join(data_dir, "cifar10", "test_batch_from_jpeg.bin"), dtype=np.uint8)
    raw = raw.reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def load_cifar(data_dir):
    cache = os.path.join(CACHE, "cifar10_train.npz")
    if not os.path.exists(cache):
        from PIL import Image
        xs, ys = [], []
        with tarfile.open(os.path.join(data_dir, "cifar10", "train_jpeg.tar.gz")) as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".jpg"):
                    continue
                cls = member.name.split("/")[-2]
                img = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                xs.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
                ys.append(CIFAR_CLASSES.index(cls))
        os.makedirs(CACHE, exist_ok=True)
        np.savez(cache, x=np.stack(xs), y=np.array(ys, dtype=np.int64))
    z = np.load(cache)
    test_x, test_y = load_cifar_test(data_dir)
    return z["x"], z["y"], test_x, test_y


# ----------------------------------------------------------------------------------------------
# Models (architectures exactly as named)

class MiniOnnMnist(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 16, 5)
        self.fc1 = nn.Linear(256, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class PneumoniaCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 3 * 3, 64)
        self.fc2 = nn.Linear(64, 2)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)   # 14x14
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)   # 7x7
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 2)   # 3x3
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class MiniOnnCifar(nn.Module):
    def __init__(self):
        super().__init__()
        c = lambda i, o, k: nn.Conv2d(i, o, k, padding=k // 2)
        self.convs = nn.ModuleList([c(3, 64, 3), c(64, 64, 3), c(64, 64, 3), c(64, 64, 3),
                                    c(64, 64, 3), c(64, 64, 1), c(64, 16, 1)])
        self.fc = nn.Linear(1024, 10)
        # He initialization: with PyTorch's default, seven plain ReLU convs start with a vanishing
        # signal and the first epochs make no progress.
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i in (1, 3):
                x = F.avg_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            # Projection shortcut (1x1 conv + BN): exact in every suite, unlike channel padding.
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(3):
                blocks.append(BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class VggMnist(nn.Module):
    """VGG-style: stacks of 3x3 convolutions with BatchNorm, max pools, an FC head; the forward
    flattens with `x.view(x.size(0), -1)`, the idiom that exports as a Shape → Gather → Unsqueeze
    → Concat → Reshape chain."""

    def __init__(self):
        super().__init__()
        c = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, bias=False), nn.BatchNorm2d(o), nn.ReLU())
        self.features = nn.Sequential(c(1, 8), c(8, 8), nn.MaxPool2d(2),    # 28 → 26 → 24 → 12
                                      c(8, 16), c(16, 16), nn.MaxPool2d(2))  # 12 → 10 → 8 → 4
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class MobileNetCifar(nn.Module):
    """MobileNet-style: a 3x3 stem, then depthwise-separable blocks (depthwise 3x3 + BN + ReLU,
    pointwise 1x1 + BN + ReLU), strided depthwise convolutions to downsample, global average
    pool, FC."""

    def __init__(self):
        super().__init__()

        def separable(cin, cout, stride):
            return nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(separable(16, 32, 2),    # 32 → 16
                                    separable(32, 64, 2),    # 16 → 8
                                    separable(64, 64, 1),
                                    separable(64, 128, 2))   # 8 → 4
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


# ----------------------------------------------------------------------------------------------
# Recipes

RECIPES = {
    "minionn-mnist": dict(net=MiniOnnMnist, data=load_mnist, dataset="mnist", classes=MNIST_CLASSES,
                          mean=[0.1307], std=[0.3081], epochs=60, batch=64, lr=2e-3, opt="adam",
                          wd=1e-4, aug="affine"),
    "lenet-mnist": dict(net=LeNet, data=load_mnist, dataset="mnist", classes=MNIST_CLASSES,
                        mean=[0.1307], std=[0.3081], epochs=60, batch=64, lr=2e-3, opt="adam",
                        wd=1e-4, aug="affine"),
    "minionn-fashion": dict(net=MiniOnnMnist, data=load_fashion, dataset="fashion-mnist",
                            classes=FASHION_CLASSES, mean=[0.2860], std=[0.3530], epochs=25,
                            batch=128, lr=2e-3, opt="adam", wd=1e-4, aug="flip"),
    "pneumonia-cnn": dict(net=PneumoniaCnn, data=load_pneumonia, dataset="pneumoniamnist",
                          classes=PNEUMONIA_CLASSES, mean=[0.5640], std=[0.1741], epochs=40,
                          batch=64, lr=2e-3, opt="adam", wd=1e-4, aug="affine"),
    "minionn-cifar": dict(net=MiniOnnCifar, data=load_cifar, dataset="cifar10", classes=CIFAR_CLASSES,
                          mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616], epochs=12,
                          batch=128, lr=2e-3, opt="adam", wd=5e-4, aug="crop-flip"),
    "resnet20-cifar": dict(net=ResNet20, data=load_cifar, dataset="cifar10", classes=CIFAR_CLASSES,
                           mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616], epochs=15,
                           batch=128, lr=0.1, opt="sgd", wd=5e-4, aug="crop-flip"),
    "vgg-mnist": dict(net=VggMnist, data=load_mnist, dataset="mnist", classes=MNIST_CLASSES,
                      mean=[0.1307], std=[0.3081], epochs=30, batch=128, lr=4e-3, opt="adam",
                      wd=1e-4, aug="affine"),
    "mobilenet-cifar": dict(net=MobileNetCifar, data=load_cifar, dataset="cifar10",
                            classes=CIFAR_CLASSES, mean=[0.4914, 0.4822, 0.4465],
                            std=[0.2470, 0.2435, 0.2616], epochs=20, batch=128, lr=4e-3,
                            opt="adam", wd=5e-4, aug="crop-flip"),
}


def augment(x, kind, gen):
    """Batch augmentation on normalized tensors (N, C, H, W), driven by a seeded generator."""
    n = x.shape[0]
    if kind in ("affine",):
        angle = (torch.rand(n, generator=gen) - 0.5) * 2 * (12 * np.pi / 180)
        scale = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2
        shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.2
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                             torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        # Pad with the normalized value of a black pixel.
        bg = x.amin(dim=(1, 2, 3), keepdim=True)
        return F.grid_sample(x - bg, grid, align_corners=False) + bg
    if kind in ("flip", "crop-flip"):
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if kind == "crop-flip":
        # Random 32x32 crops of the image zero-padded by 4 pixels.
        n, c, h, w = x.shape
        padded = F.pad(x, (4, 4, 4, 4))
        dy = torch.randint(0, 9, (n,), generator=gen)
        dx = torch.randint(0, 9, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        x = padded.gather(2, rows.expand(n, c, h, padded.shape[3])).gather(3, cols.expand(n, c, h, w))
    return x


def normalize(x_u8, mean, std):
    x = torch.from_numpy(np.ascontiguousarray(x_u8)).float() / 255.0
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def evaluate(net, x, y, batch=500):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def resume(ckpt, name, epochs, net, opt, sched, gen):
    """Restores a run of `epochs` epochs from its checkpoint; returns the next epoch (0 if none)."""
    if not os.path.exists(ckpt):
        return 0
    state = torch.load(ckpt, weights_only=False)
    if state["epochs"] != epochs:
        return 0
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    print(f"[{name}] resuming after epoch {state['epoch'] + 1}", flush=True)
    return state["epoch"] + 1


def checkpoint(ckpt, epoch, epochs, net, opt, sched, gen):
    """Saves everything a run needs to resume after `epoch`, atomically."""
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    torch.save(dict(net=net.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(), gen=gen.get_state(),
                    rng=torch.get_rng_state(), epoch=epoch, epochs=epochs), ckpt + ".tmp")
    os.replace(ckpt + ".tmp", ckpt)


def train(name, data_dir, out_dir, epochs=None):
    r = RECIPES[name]
    torch.manual_seed(1234)
    np.random.seed(1234)
    gen = torch.Generator().manual_seed(1234)
    train_x, train_y, test_x, test_y = r["data"](data_dir)
    xtr, ytr = normalize(train_x, r["mean"], r["std"]), torch.from_numpy(train_y)
    xte, yte = normalize(test_x, r["mean"], r["std"]), torch.from_numpy(test_y)
    epochs = epochs or r["epochs"]
    net = r["net"]()
    if r["opt"] == "adam":
        opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=r["wd"])
    else:
        opt = torch.optim.SGD(net.parameters(), lr=r["lr"], momentum=0.9, nesterov=True,
                              weight_decay=r["wd"])
    steps = (len(xtr) + r["batch"] - 1) // r["batch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=epochs * steps,
                                                pct_start=0.15)
    ckpt = os.path.join(HERE, "checkpoints", f"{name}.pt")
    start = resume(ckpt, name, epochs, net, opt, sched, gen)
    for epoch in range(start, epochs):
        net.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(steps):
            idx = perm[i * r["batch"]:(i + 1) * r["batch"]]
            xb = augment(xtr[idx], r["aug"], gen)
            loss = F.cross_entropy(net(xb), ytr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        acc = evaluate(net, xte, yte) if (epoch % 5 == 4 or epoch == epochs - 1) else float("nan")
        print(f"[{name}] epoch {epoch + 1}/{epochs} loss {total / steps:.4f} test {acc:.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)
        checkpoint(ckpt, epoch, epochs, net, opt, sched, gen)
    acc = evaluate(net, xte, yte)
    export(net, name, r, acc, len(xte), epochs, out_dir)
    print(f"[{name}] exported, PyTorch float test accuracy {acc:.4f} on {len(xte)} images", flush=True)


def export(net, name, r, acc, n_test, epochs, out_dir):
    import onnx
    net.eval()
    shape = (1, len(r["mean"])) + ((32, 32) if r["dataset"] == "cifar10" else (28, 28))
    path = os.path.join(out_dir, f"{name}.onnx")
    os.makedirs(out_dir, exist_ok=True)
    torch.onnx.export(net, torch.zeros(shape), path, opset_version=17, dynamo=False,
                      do_constant_folding=True, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    model = onnx.load(path)
    meta = dict(name=name, dataset=r["dataset"], classes=r["classes"], mean=r["mean"], std=r["std"],
                input_shape=list(shape[1:]), pytorch_test_accuracy=round(acc, 4),
                test_images=n_test,
                recipe=f"{r['opt']} lr {r['lr']} one-cycle, wd {r['wd']}, {epochs} epochs, "
                       f"batch {r['batch']}, augmentation {r['aug']}, label smoothing 0.05, seed 1234")
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "tessera", json.dumps(meta)
    onnx.checker.check_model(model)
    onnx.save(model, path)


# ----------------------------------------------------------------------------------------------
# In-repo evaluation sets and sample images

def write_idx(path, array):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 | array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def evalsets(data_dir, count=200):
    from PIL import Image
    out = os.path.join(REPO, "data")
    img_dir = os.path.join(REPO, "examples", "images")
    os.makedirs(out, exist_ok=True)
    os.makedirs(img_dir, exist_ok=True)
    sets = {
        "mnist": (read_idx(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz")),
                  read_idx(os.path.join(data_dir, "mnist", "t10k-labels-idx1-ubyte.gz")), MNIST_CLASSES),
        "fashion-mnist": (read_idx(os.path.join(data_dir, "fashion-mnist", "t10k-images-idx3-ubyte.gz")),
                          read_idx(os.path.join(data_dir, "fashion-mnist", "t10k-labels-idx1-ubyte.gz")),
                          FASHION_CLASSES),
    }
    z = np.load(os.path.join(data_dir, "medmnist", "pneumoniamnist_balanced_3166.npz"))
    sets["pneumoniamnist"] = (z["test_images"], z["test_labels"].reshape(-1), PNEUMONIA_CLASSES)
    for name, (x, y, classes) in sets.items():
        idx = [i * len(x) // count for i in range(count)]
        write_idx(os.path.join(out, f"{name}-test-{count}-images.idx"), x[idx])
        write_idx(os.path.join(out, f"{name}-test-{count}-labels.idx"), y[idx].astype(np.uint8))
        for i in idx[:3]:
            Image.fromarray(x[i]).save(os.path.join(img_dir, f"{name}-test{i:05}-{classes[y[i]]}.png"))
    cx, cy = load_cifar_test(data_dir)
    idx = [i * len(cx) // count for i in range(count)]
    records = np.concatenate([cy[idx].astype(np.uint8)[:, None], cx[idx].reshape(count, -1)], 1)
    records.astype(np.uint8).tofile(os.path.join(out, f"cifar10-test-{count}.bin"))
    for i in idx[::67][:3]:
        Image.fromarray(cx[i].transpose(1, 2, 0)).save(
            os.path.join(img_dir, f"cifar10-test{i:05}-{CIFAR_CLASSES[cy[i]]}.png"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=list(RECIPES) + ["all", "evalsets"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default=os.path.join(REPO, "models"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.model == "evalsets":
        evalsets(a.data)
    else:
        for name in (RECIPES if a.model == "all" else [a.model]):
            train(name, a.data, a.out, a.epochs)


if __name__ == "__main__":
    main()
