"""MNIST views, split and the offline error, read from the shared raw files (no downloads)."""

import pytest
import torch

from datamodules.mnist import MNISTDataModule, MNISTUnavailable, make_view, permutation


@pytest.fixture(scope="module")
def data(mnist_dir_module):
    module = MNISTDataModule("flat", data_dir=mnist_dir_module, download=False)
    module.setup()
    return module


def test_split_sizes_and_seeded_split(data, mnist_dir_module):
    assert [len(data.split(name)) for name in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    other = MNISTDataModule("flat", data_dir=mnist_dir_module, seed=1, download=False)
    assert not torch.equal(other.split("val").tensors[1][:50], data.split("val").tensors[1][:50])
    train_images = {bytes(image.numpy()) for image in data.split("train").tensors[0][:2000]}
    assert not any(
        bytes(image.numpy()) in train_images for image in data.split("val").tensors[0][:2000]
    )


@pytest.mark.parametrize(
    ("view", "shape"),
    [
        ("flat", (8, 784)),
        ("image", (8, 1, 28, 28)),
        ("rows", (8, 28, 28)),
        ("pixels", (8, 784, 1)),
        ("permuted", (8, 784, 1)),
    ],
)
def test_views_have_their_shapes_and_are_normalized(data, view, shape):
    images = data.split("train").tensors[0][:8]
    x = make_view(images, view, permutation(0))
    assert x.shape == shape
    whole = make_view(data.split("train").tensors[0][:5000], "flat")
    assert abs(float(whole.mean())) < 0.05 and abs(float(whole.std()) - 1) < 0.05


def test_permutation_is_fixed_by_seed_and_the_same_for_train_and_test(mnist_dir_module):
    first = MNISTDataModule("permuted", data_dir=mnist_dir_module, permutation_seed=3)
    again = MNISTDataModule("permuted", data_dir=mnist_dir_module, permutation_seed=3)
    assert torch.equal(first.order, again.order) and not torch.equal(first.order, permutation(4))
    for loader, split in ((first.train_dataloader(), "train"), (first.test_dataloader(), "test")):
        x, _ = next(iter(loader))
        assert x.shape[1:] == (784, 1), split
    images = first.split("test").tensors[0][:4]
    torch.testing.assert_close(
        make_view(images, "permuted", first.order)[:, :, 0],
        make_view(images, "flat")[:, first.order],
    )


def test_without_local_files_and_offline_the_error_says_where_to_put_them(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(MNIST, "download", offline)
    module = MNISTDataModule("flat", data_dir=tmp_path)
    with pytest.raises(MNISTUnavailable, match=r"MNIST is not in .*MNIST/raw and could not be"):
        module.setup()
