"""The MNIST loader on synthetic IDX files, and the label encoding."""

import gzip

import numpy as np
import pytest

from conftest import ff, idx_bytes, write_fake_mnist


def test_loads_fake_mnist(tmp_path):
    table = write_fake_mnist(tmp_path)
    x_tr, y_tr, x_te, y_te = ff.load_mnist(tmp_path, checksums=table, mirrors=())
    assert x_tr.shape == (300, 784) and x_te.shape == (100, 784)
    assert x_tr.dtype == np.float32 and 0 <= x_tr.min() and x_tr.max() == 1.0
    assert y_tr.dtype == np.int64 and set(np.unique(y_tr)) <= set(range(10))


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HINTON_MNIST_DIR", str(tmp_path / "env"))
    assert ff.mnist_dir(tmp_path / "flag") == tmp_path / "flag"
    assert ff.mnist_dir() == tmp_path / "env"
    monkeypatch.delenv("HINTON_MNIST_DIR")
    assert ff.mnist_dir().parts[-2:] == (".cache", "hinton-mnist")


def test_truncated_archive(tmp_path):
    table = write_fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ff.DataError, match="truncated"):
        ff.load_mnist(tmp_path, checksums=table, mirrors=())


def test_not_gzip(tmp_path):
    table = write_fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"hello, not a gzip file")
    with pytest.raises(ff.DataError, match="t10k-labels"):
        ff.load_mnist(tmp_path, checksums=table, mirrors=())


def test_one_changed_label_fails_checksum(tmp_path):
    table = write_fake_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8] = (raw[8] + 1) % 10
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ff.DataError, match="SHA-256"):
        ff.load_mnist(tmp_path, checksums=table, mirrors=())


def test_bad_magic(tmp_path):
    raw = bytearray(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    raw[2] = 0x09
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ff.DataError, match="magic"):
        ff.read_idx(path, sha256=None)


def test_header_size_mismatch(tmp_path):
    raw = idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-5]
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(ff.DataError, match="header"):
        ff.read_idx(path, sha256=None)


def test_missing_files_without_network_names_the_fix(tmp_path):
    with pytest.raises(ff.DataError, match="HINTON_MNIST_DIR"):
        ff.load_mnist(tmp_path / "empty", mirrors=())


def test_download_from_mirror_is_atomic_and_verified(tmp_path):
    """The download path, against a file:// mirror (no network)."""
    mirror = tmp_path / "mirror"
    table = write_fake_mnist(mirror)
    cache = tmp_path / "cache"
    x_tr, *_ = ff.load_mnist(cache, checksums=table, mirrors=(mirror.as_uri() + "/",))
    assert len(x_tr) == 300
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in table)
    # second mirror used when the first fails
    cache2 = tmp_path / "cache2"
    ff.load_mnist(cache2, checksums=table,
                  mirrors=((tmp_path / "nowhere").as_uri() + "/", mirror.as_uri() + "/"))
    assert len(list(cache2.iterdir())) == 4


def test_import_has_no_side_effects(tmp_path):
    import subprocess, sys
    code = "import ff_label_in_input, threading; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ff.__file__.rsplit("/", 1)[0],
                         env={"HOME": str(tmp_path), "PATH": ""}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert list(tmp_path.iterdir()) == []          # no cache folder created


def test_embed_label():
    x = np.full((3, 784), 0.5, np.float32)
    xe = ff.embed_label(x, np.array([0, 4, 9]))
    assert (x == 0.5).all()                              # a copy
    assert xe.dtype == np.float32
    expected = np.zeros((3, 10), np.float32)
    expected[[0, 1, 2], [0, 4, 9]] = 1
    np.testing.assert_array_equal(xe[:, :10], expected)
    np.testing.assert_array_equal(xe[:, 10:], x[:, 10:])


def test_wrong_labels_are_uniform_and_never_true():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 9000)
    y_neg = ff.draw_wrong_labels(y, rng)
    assert (y_neg != y).all()
    counts = np.bincount(y_neg[y == 3], minlength=10)
    assert counts[3] == 0
    assert np.abs(counts[np.arange(10) != 3] - 1000).max() < 150

