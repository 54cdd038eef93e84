"""The device-resident path (images kept on the training device), run on CPU tensors: the same
batches, augmentation and results as reading each batch from the array; and the GPU's
out-of-memory error explained."""
import numpy as np
import pytest
import torch
from conftest import write_set

import helpers.model.batches as batches
import helpers.model.training as training
from helpers.core.errors import ParameterError
from helpers.curation.out_of_fold import FoldSettings, out_of_fold_probabilities
from helpers.data.sets import open_image_set
from helpers.model.batches import DeviceImages, image_batch, on_device, to_tensor
from helpers.model.inference import predict_probabilities
from helpers.model.training import fit, for_training_rows
from helpers.run.parameters import train_config

CPU = torch.device("cpu")
FAST = dict(arch="resnet10", width=8, batch_size=16, epochs=2, progress=False, augment="flips_rot90", tta=True)


@pytest.fixture
def image_set(tmp_path, scheme):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 120).astype(float)
    images = rng.integers(0, 120, (120, 2, 9, 9)).astype(np.uint8)
    images[labels == 1, 0, 3:6, 3:6] = 250
    split = np.where(rng.random(120) < 0.2, "test", "train")
    return open_image_set(write_set(tmp_path / "s", "s", images, labels, split=split), scheme)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_resident_batch_equals_the_batch_read_from_the_array(dtype):
    images = np.random.default_rng(1).integers(0, 255, (50, 3, 5, 5)).astype(dtype)
    if dtype == np.float32:
        images /= 255
    resident = DeviceImages(images, CPU)
    rows = np.array([3, 0, 41, 7])
    assert torch.equal(resident.batch(rows), to_tensor(images[rows], CPU))
    assert torch.equal(image_batch(resident, slice(10, 20), CPU), image_batch(images, slice(10, 20), CPU))


def test_the_copy_is_made_in_chunks_and_reused_for_the_same_array(monkeypatch):
    monkeypatch.setattr(batches, "COPY_ROWS", 7)
    images = np.random.default_rng(2).integers(0, 255, (30, 1, 4, 4)).astype(np.uint8)
    first = on_device(images, CPU, "yes")
    assert isinstance(first, DeviceImages) and torch.equal(first.store, torch.from_numpy(images))
    assert on_device(images, CPU, "yes") is first
    assert on_device(images.copy(), CPU, "yes") is not first
    assert on_device(images, CPU, "auto") is images and on_device(images, CPU, "no") is images  # auto: GPUs only


def test_training_on_the_resident_copy_gives_the_same_model(image_set, scheme):
    on_array = fit(image_set, scheme, train_config(images_on_device="no", **FAST))
    resident = fit(image_set, scheme, train_config(images_on_device="yes", **FAST))
    assert on_array.history["train_loss"].tolist() == resident.history["train_loss"].tolist()
    for name, value in on_array.model.state_dict().items():
        assert torch.equal(value, resident.model.state_dict()[name]), name
    probs = predict_probabilities(on_array.model, image_set.images)
    np.testing.assert_array_equal(probs, predict_probabilities(on_array.model, DeviceImages(image_set.images, CPU)))


def test_fold_models_share_one_copy_of_the_images(image_set, scheme, monkeypatch):
    made = []
    original = DeviceImages.__init__

    def counting(self, images, device):
        made.append(len(images))
        original(self, images, device)

    monkeypatch.setattr(DeviceImages, "__init__", counting)
    batches.release_device_images()
    cfg = train_config(images_on_device="yes", **FAST)
    oof = out_of_fold_probabilities(image_set, scheme, cfg, FoldSettings(folds=3))
    assert made == [len(image_set)]
    trained = oof.fold >= 0
    assert np.isfinite(oof.probs[trained]).all()


def test_running_out_of_gpu_memory_names_the_batch_size(image_set, scheme, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training, "augment_batch", exhausted)
    with pytest.raises(ParameterError, match=r"'batch_size'.*out of memory at batch_size 16.*lower batch_size"):
        fit(image_set, scheme, train_config(**FAST))


def test_a_small_set_trains_with_smaller_batches_and_a_scaled_learning_rate(image_set, scheme):
    gpu = train_config(batch_size=512, lr=0.024, min_steps_per_epoch=45)
    small = for_training_rows(gpu, 2900)
    assert (small.batch_size, small.lr) == (64, pytest.approx(0.003))
    assert for_training_rows(gpu, 100_000) is gpu  # 195 batches of 512 an epoch: as given
    assert for_training_rows(train_config(batch_size=512), 2900).batch_size == 512  # the rule is off by default
    result = fit(image_set, scheme, train_config(**{**FAST, "batch_size": 64, "lr": 0.01, "min_steps_per_epoch": 4}))
    n_train = len(result.data.train_rows)
    assert result.batch_size == n_train // 4 and result.lr == pytest.approx(0.01 * (n_train // 4) / 64)
