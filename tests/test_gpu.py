"""--device cuda: the same module on an NVIDIA GPU through CuPy. Skipped, with the reason,
where CuPy or a GPU is missing (CI has neither); the CPU path is tested everywhere else."""

import numpy as np
import pytest

from conftest import ff, real_mnist_dir

try:
    ff.array_module("cuda")
    NO_GPU = None
except ff.DeviceError as e:
    NO_GPU = str(e)

needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"no GPU path here: {NO_GPU}")
FLAGS = ["--layer-sizes", "784,100,100", "--batch-size", "50", "--n-epochs", "1", "--quiet"]


def test_device_cuda_without_cupy_or_gpu_is_a_one_line_error(capsys):
    if NO_GPU is None:
        pytest.skip("CuPy and a GPU are present")
    with pytest.raises(SystemExit) as e:
        ff.main(["--device", "cuda", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "--device cuda" in err[-1] and "Traceback" not in "\n".join(err)


def train(data, argv, **kwargs):
    _, cfg = ff.parse_args(argv)
    return ff.train(cfg, *data, log=None, **kwargs)


@pytest.fixture(scope="module")
def mnist():
    if real_mnist_dir() is None:
        pytest.skip("real MNIST not found: set HINTON_MNIST_DIR")
    return ff.load_mnist(real_mnist_dir(), mirrors=())


@needs_gpu
@pytest.mark.parametrize("recipe", ["baseline", "hinton"])
def test_one_epoch_on_2000_images_matches_the_cpu(mnist, recipe):
    """Same random stream, same arithmetic: the weights agree to float32 tolerance."""
    data = (mnist[0][:2000], mnist[1][:2000])
    argv = FLAGS + ["--recipe", recipe]
    cpu, _ = train(data, argv)
    gpu, _ = train(data, argv + ["--device", "cuda"])
    np.testing.assert_allclose(ff.to_host(gpu.params), cpu.params, rtol=1e-3, atol=1e-4)
    if recipe == "hinton":
        np.testing.assert_allclose(ff.to_host(gpu.head), cpu.head, rtol=1e-3, atol=1e-4)


@needs_gpu
def test_seed_recipe_reaches_the_cpu_accuracy(mnist):
    """The real-MNIST check of the CPU suite (4 epochs, all images, >= 90%), on the GPU."""
    x, y, xt, yt = mnist
    net, _ = train((x, y), ["--n-epochs", "4", "--device", "cuda", "--quiet"])
    assert ff.accuracy(net, xt, yt, "all") >= 0.90


@needs_gpu
def test_checkpoint_from_the_gpu_resumes_on_the_cpu(mnist, tmp_path):
    data = (mnist[0][:2000], mnist[1][:2000])
    argv = FLAGS[:-3] + ["--n-epochs", "2", "--recipe", "hinton", "--quiet"]
    straight, _ = train(data, argv)
    ckpt = tmp_path / "gpu.npz"

    def stop_after_one(epoch, net, history):
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(ff.Interrupted):
        train(data, argv + ["--device", "cuda"], checkpoint=ckpt, callback=stop_after_one)
    resumed, history = train(data, argv, resume=ckpt)
    assert isinstance(resumed.params, np.ndarray) and history["epoch"] == [1, 2]
    np.testing.assert_allclose(resumed.params, straight.params, rtol=1e-3, atol=1e-4)
