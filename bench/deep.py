"""Networks raced against their peers: wall time to a test accuracy, one run, same data, same
machine, same threads.

    .venv/bin/pip install keras==3.15.1          # bench only, never a runtime dependency
    .venv/bin/python bench/deep.py [--data mnist-proxy|fashion-mnist] [--threads N]
                                   [--only NAME,...] [--seeds 0,1,2]

Contestants, each trained its own way:
  cnn-fast        mnistlab's network with the study's full-profile settings for the data;
  seed-mlp        the seed's Keras MLP (Dense 128 relu, Dense 10 softmax; Adam, batch 128,
                  10 epochs), on Keras 3 with the PyTorch backend;
  seed-cnn        the seed's Keras CNN (Conv 32 3x3, max-pool 2, dropout 0.25, Dense 128,
                  dropout 0.5, Dense 10; Adam, batch 128, 10 epochs), same backend;
  keras-convnet   Keras's `mnist_convnet` example (Conv 32, pool, Conv 64, pool, dropout 0.5,
                  Dense 10; Adam, batch 128, 15 epochs, a tenth held out), same backend;
  torch-example   PyTorch's `examples/mnist` (Conv 32, Conv 64, pool, dropout 0.25, FC 128,
                  dropout 0.5, FC 10; Adadelta lr 1.0, StepLR 0.7 per epoch, batch 64,
                  14 epochs, inputs normalised by MNIST's mean and sd), written from its
                  published description.
After every epoch each is scored on the test set (off its clock). The table gives the wall
time of training at which it first reached the target, the epochs that took, and its best
accuracy. --seeds trains cnn-fast once per seed (a row each; near a target its seed decides
whether it reaches it); the peers train once, with their own recipes' seeds. Targets: 0.99 on
the MNIST proxy (the 5,000 bundled digits to train, the official 10,000 test digits of
../shared/data/mnist-test-10k to score), 0.92 on full Fashion-MNIST.
Run nothing else beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import recorded  # noqa: E402

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test-10k"
TARGETS = {"mnist-proxy": 0.99, "fashion-mnist": 0.92}


def race_data(name: str):
    """(x_train, y_train, x_test, y_test) as uint8 images and int labels."""
    from mnistlab import load_dataset

    if name == "fashion-mnist":
        data = load_dataset("fashion-mnist")
        return data.x_train, data.y_train, data.x_test, data.y_test
    if not SHARED_MNIST.is_dir():
        sys.exit(f"bench/deep.py: the MNIST proxy needs {SHARED_MNIST}")
    from mnistlab.data.idx import read_idx

    bundled = load_dataset("mnist-5k")
    return (np.concatenate([bundled.x_train, bundled.x_test]),
            np.concatenate([bundled.y_train, bundled.y_test]),
            read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz"),
            read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64))


class Clock:
    """Training time: the wall time since ``start`` less the time spent scoring."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.paused = 0.0
        self.epochs: list[tuple[float, float]] = []  # (training seconds, test accuracy)

    def score(self, accuracy_fn) -> None:
        at = time.perf_counter()
        elapsed = at - self.started - self.paused
        accuracy = float(accuracy_fn())
        self.epochs.append((elapsed, accuracy))
        self.paused += time.perf_counter() - at


def cnn_fast(x, y, xt, yt, data_name: str, seed: int = 0) -> Clock:
    from mnistlab import build_config
    from mnistlab.data.datasets import Dataset
    from mnistlab.models.deep import TorchClassifier

    shaped = Dataset(data_name, x, y, xt, yt, [str(i) for i in range(10)],
                     digits=data_name == "mnist-proxy")  # as the study decides for MNIST
    spec = build_config("full").deep.models["cnn-fast"].for_data(shaped, "cnn-fast")
    clock = Clock()

    class Scored(TorchClassifier):
        def _train_epoch(self, *args):
            out = super()._train_epoch(*args)
            images = self._images(xt)

            def accuracy():
                self.module_.eval()
                with torch.no_grad():
                    pred = torch.cat([self.module_(images[i:i + 2048]).argmax(1)
                                      for i in range(0, len(images), 2048)])
                return float((self.classes_[pred.numpy()] == yt).mean())
            clock.score(accuracy)
            return out

    clock.started = time.perf_counter()
    Scored("cnn-fast", **{**spec.estimator_params(), "seed": seed}).fit(x, y)
    return clock


def keras_race(name: str, x, y, xt, yt) -> Clock:
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    flat = name == "seed-mlp"
    inputs = (x.reshape(len(x), -1) if flat else x[..., None]).astype("float32") / 255
    tests = (xt.reshape(len(xt), -1) if flat else xt[..., None]).astype("float32") / 255
    if name == "seed-mlp":
        model = keras.Sequential([keras.Input((784,)), layers.Dense(128, activation="relu"),
                                  layers.Dense(10, activation="softmax")])
        epochs, validation = 10, 0.0
    elif name == "seed-cnn":
        model = keras.Sequential([
            keras.Input((28, 28, 1)), layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)), layers.Dropout(0.25), layers.Flatten(),
            layers.Dense(128, activation="relu"), layers.Dropout(0.5),
            layers.Dense(10, activation="softmax")])
        epochs, validation = 10, 0.0
    else:  # keras-convnet
        model = keras.Sequential([
            keras.Input((28, 28, 1)), layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)), layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dropout(0.5),
            layers.Dense(10, activation="softmax")])
        epochs, validation = 15, 0.1
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    clock = Clock()

    class Score(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            clock.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            clock.score(lambda: np.mean(
                model.predict(tests, batch_size=2048, verbose=0).argmax(1) == yt))

    model.fit(inputs, keras.utils.to_categorical(y, 10), batch_size=128, epochs=epochs,
              validation_split=validation, verbose=0, callbacks=[Score()])
    return clock


class TorchExampleNet(nn.Module):
    """PyTorch's examples/mnist network."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        x = self.dropout1(torch.flatten(torch.max_pool2d(x, 2), 1))
        return torch.log_softmax(self.fc2(self.dropout2(torch.relu(self.fc1(x)))), dim=1)


def torch_example(x, y, xt, yt) -> Clock:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(1)  # the example's default seed
    normalise = lambda a: (torch.tensor(a, dtype=torch.float32)[:, None] / 255  # noqa: E731
                           - 0.1307) / 0.3081
    loader = DataLoader(TensorDataset(normalise(x), torch.tensor(y, dtype=torch.long)),
                        batch_size=64, shuffle=True)
    tests = normalise(xt)
    model = TorchExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    clock = Clock()

    def accuracy():
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(tests[i:i + 2048]).argmax(1)
                              for i in range(0, len(tests), 2048)])
        return (pred.numpy() == yt).mean()

    for _ in range(14):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            nn.functional.nll_loss(model(xb), yb).backward()
            optimizer.step()
        scheduler.step()
        clock.score(accuracy)
    return clock


CONTESTANTS = ("cnn-fast", "seed-mlp", "seed-cnn", "keras-convnet", "torch-example")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=list(TARGETS), default="mnist-proxy")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its own)")
    parser.add_argument("--only", default=",".join(CONTESTANTS))
    parser.add_argument("--seeds", default="0", help="cnn-fast's seeds, e.g. 0,1,2,3,4")
    args = parser.parse_args()
    if not all(part.isdigit() for part in args.seeds.split(",")):
        parser.error(f"--seeds: {args.seeds!r}: use whole numbers joined by commas")
    args.seeds = [int(part) for part in args.seeds.split(",")]
    args.names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(args.names) - set(CONTESTANTS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; known: {', '.join(CONTESTANTS)}")
    return args


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.names
    x, y, xt, yt = race_data(args.data)
    target = TARGETS[args.data]
    import keras

    print(f"## bench/deep.py: {args.data}, {len(x):,} training and {len(xt):,} test images, "
          f"target {target}, {torch.get_num_threads()} torch threads, Keras {keras.__version__} "
          f"on PyTorch {torch.__version__}\n")
    clocks = {}
    for name in names:
        if name == "cnn-fast":
            for seed in args.seeds:
                row = name if len(args.seeds) == 1 else f"{name} seed {seed}"
                clocks[row] = cnn_fast(x, y, xt, yt, args.data, seed)
                _print_epochs(row, clocks[row])
            continue
        if name == "torch-example":
            clocks[name] = torch_example(x, y, xt, yt)
        else:
            clocks[name] = keras_race(name, x, y, xt, yt)
        _print_epochs(name, clocks[name])
    reached = {name: next(((i + 1, s) for i, (s, acc) in enumerate(clock.epochs)
                           if acc >= target), None) for name, clock in clocks.items()}
    print(f"\n| network | epochs | training (s) | best test acc | reached {target} at (s) | "
          "epochs to it |")
    print("|---|---|---|---|---|---|")
    for name, clock in clocks.items():
        hit = reached[name]
        print(f"| {name} | {len(clock.epochs)} | {clock.epochs[-1][0]:.1f} | "
              f"{max(a for _, a in clock.epochs):.4f} | "
              f"{f'{hit[1]:.1f}' if hit else 'not reached'} | {hit[0] if hit else '-'} |")
    ours = [n for n in clocks if n.startswith("cnn-fast")]
    peers = {n: hit[1] for n, hit in reached.items() if hit and n not in ours}
    hits = [reached[n][1] for n in ours if reached[n]]
    if ours:
        print(f"\ncnn-fast reached {target} in {len(hits)} of {len(ours)} training(s)"
              + (f", after {float(np.median(hits)):.1f} s (median)" if hits else "") + ".")
    if hits and peers:
        fastest = min(peers, key=peers.get)
        print(f"That is {peers[fastest] / float(np.median(hits)):.1f}x sooner than the fastest "
              f"peer that reached it ({fastest}).")
    elif hits:
        print("No peer reached it.")
    _against_the_best_peer(clocks, ours)


def _print_epochs(name: str, clock: Clock) -> None:
    epochs = ", ".join(f"{acc:.4f}" for _, acc in clock.epochs)
    print(f"- {name}: test accuracy after each epoch: {epochs}", flush=True)


def _against_the_best_peer(clocks: dict[str, Clock], ours: list[str]) -> None:
    """Time to the best accuracy any peer reached, for every network that reached it."""
    peers = {n: max(a for _, a in c.epochs) for n, c in clocks.items() if n not in ours}
    if not ours or not peers:
        return
    best_peer = max(peers, key=peers.get)
    level = peers[best_peer]
    when = {n: next((s for s, a in c.epochs if a >= level), None) for n, c in clocks.items()}
    print(f"\nTo the best accuracy a peer reached ({level:.4f}, {best_peer}): " + "; ".join(
        f"{n} {'not reached' if s is None else f'{s:.1f} s'}" for n, s in when.items()))
    ours_when = [when[n] for n in ours if when[n] is not None]
    if ours_when:
        median = float(np.median(ours_when))
        print(f"cnn-fast reached it {when[best_peer] / median:.1f}x sooner than {best_peer}"
              + (f" (median of {len(ours_when)} of {len(ours)} seeds)." if len(ours) > 1
                 else "."))


if __name__ == "__main__":
    arguments = _arguments()
    with recorded("bench/deep.py", arguments.data):  # one part of RESULTS.md per dataset
        main(arguments)
