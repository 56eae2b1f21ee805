"""Shared fixtures: tiny synthetic MNIST-format folders, the real data when present."""

import gzip
import hashlib
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ff_label_in_input as ff  # noqa: E402

# One table of flag sets that between them reach every recipe, negatives policy, step form,
# schedule, jitter and peer gate; the device, resume and schedule tests all run it.
VARIANTS = {
    "baseline": [],
    "hard": ["--neg-sampling", "hard"],
    "hard-first, sgd, cooldown": ["--neg-sampling", "hard-first", "--optimizer", "sgd", "--lr", "0.01",
                                  "--lr-schedule", "cooldown"],
    "jitter, gated peer": ["--jitter", "2", "--peer-norm", "0.03"],
    "hinton": ["--recipe", "hinton"],
    "hinton, jitter": ["--recipe", "hinton", "--jitter", "1"],
    "plain step": ["--step", "plain", "--neg-sampling", "hard"],
    "hinton, plain step": ["--recipe", "hinton", "--step", "plain"],
    "hinton, layer-update": ["--recipe", "hinton", "--schedule", "layer-update"],
    "layer-major": ["--schedule", "layer-major", "--group-batches", "3", "--neg-sampling", "hard-first"],
    "everything": ["--lr-schedule", "cooldown", "--neg-sampling", "hard", "--peer-norm", "0.03",
                   "--jitter", "--deep-lr-scale", "0.5", "--logit-scale", "D", "--threshold", "1",
                   "--predict-mode", "skip-first"],
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array (magic 0x0801 + ndim, big-endian dims)."""
    header = struct.pack(">i", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake_mnist(folder: Path, n_train=300, n_test=100, seed=0) -> dict:
    """Write four small gzipped IDX files; return their checksum table.

    Each class gets its own bright block so a tiny net can learn something.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    table = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 4 + 2 * k:7 + 2 * k, 6:22] = 255
        images[:, 0, :] = 0
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte"
            raw = idx_bytes(arr)
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            table[name] = hashlib.sha256(raw).hexdigest()
    return table


@dataclass
class FakeMnist:
    """A synthetic MNIST folder; pass checksums and mirrors to main()/load_mnist()."""
    folder: Path
    checksums: dict
    mirrors: tuple = ()

    def main(self, module, argv):
        """module.main(argv) reading this folder, never the network."""
        return module.main(argv, checksums=self.checksums, mirrors=self.mirrors)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Small synthetic MNIST files, with HINTON_MNIST_DIR pointing at them."""
    folder = tmp_path / "mnist"
    table = write_fake_mnist(folder)
    monkeypatch.setenv("HINTON_MNIST_DIR", str(folder))
    return FakeMnist(folder, table)


def real_mnist_dir():
    """The folder holding real MNIST, or None (tests that need it are skipped)."""
    for folder in (os.environ.get("HINTON_MNIST_DIR"), Path.home() / ".cache" / "hinton-mnist"):
        if folder and all((Path(folder) / f"{n}.gz").exists() for n in ff.MNIST_FILES):
            return Path(folder).resolve()   # absolute: some tests run the CLI from another folder
    return None
