"""Tissue labels: the virtual subjects' labels, the segmentation folders make-sample writes, their pairing with the
slices when a folder is read, the refusals of wrong label files, and labels through the tf.data pipeline."""

import dataclasses
import shutil

import numpy as np
import pytest
from PIL import Image

from keras_vqvae import InputError, load_slices, make_dataset, read_folder
from keras_vqvae.data import labels, synthetic

SUBJECTS = synthetic.SubjectSplit(1, 1, 1)


@pytest.fixture(scope="session")
def labelled_sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled") / "sample"
    synthetic.write_sample(root, SUBJECTS, seed=3)
    return root


@pytest.fixture()
def sample_copy(labelled_sample, tmp_path):
    return shutil.copytree(labelled_sample, tmp_path / "sample")


def test_virtual_labels_mark_the_brain_and_order_the_tissues_by_t1_intensity():
    pixels = synthetic.make_subject(2, seed=3)
    tissue = synthetic.make_labels(2, seed=3)
    assert tissue.dtype == np.uint8 and tissue.shape == pixels.shape and not tissue.flags.writeable
    assert np.all(pixels[tissue == 0] == 0)  # the background is the black outside the brain
    assert np.mean(pixels[tissue > 0] == 0) < 1e-3  # and only a few noisy CSF pixels inside are black too
    shares = np.bincount(tissue[tissue > 0], minlength=4)[1:] / np.count_nonzero(tissue)
    assert np.all(shares > 0.05), shares  # CSF, grey and white matter each a real share of the brain
    means = [pixels[tissue == label].mean() for label in (1, 2, 3)]
    assert means[0] + 40 < means[1] < means[2] - 15, means  # T1: CSF dark, grey matter between, white matter bright


def test_make_sample_writes_oasis_segmentations_that_read_back_as_the_labels(labelled_sample):
    folder = labelled_sample / "keras_png_slices_seg_validate"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 32 and names[0] == "seg_002_slice_0.nii.png"
    with Image.open(folder / "seg_002_slice_7.nii.png") as image:
        assert image.mode == "L" and image.size == (256, 256)
        values = np.asarray(image)
    assert set(np.unique(values)) == set(labels.TISSUE_VALUES)
    np.testing.assert_array_equal(values, np.array(labels.TISSUE_VALUES)[synthetic.make_labels(2, seed=3)[7]])

    data = read_folder(labelled_sample)
    assert "with tissue labels" in data.description and all(split.has_labels for split in data.splits())
    for split in data.splits():
        for image, label in zip(split.files, split.label_files):
            assert labels.label_name(image.rsplit("/", 1)[1]) == label.rsplit("/", 1)[1]


def test_labels_come_through_the_pipeline_with_their_images(labelled_sample):
    test = read_folder(labelled_sample).test
    batches = list(make_dataset(test, 256, 8, labels=True))
    images = np.concatenate([b[0].numpy() for b in batches])
    tissue = np.concatenate([b[1].numpy() for b in batches])
    order = np.argsort(test.slice_numbers)  # the files come in name order: slice_0, slice_1, slice_10, ...
    np.testing.assert_array_equal(tissue[order], synthetic.make_labels(3, seed=3))
    assert tissue.dtype == np.uint8 and images.shape == tissue.shape + (1,)

    # resized by the nearest label, and shuffled for training together with their images
    for small_images, small_labels in make_dataset(test, 64, 8, labels=True, training=True, seed=1):
        small_images, small_labels = small_images.numpy()[..., 0], small_labels.numpy()
        assert set(np.unique(small_labels)) <= {0, 1, 2, 3}
        brain = small_images > -0.5 + 2 / 255
        assert np.mean(brain == (small_labels > 0)) > 0.97


def test_embedded_data_carries_the_same_labels_as_its_files(labelled_sample):
    embedded = load_slices(None, seed=3, synthetic_subjects=SUBJECTS)
    files = read_folder(labelled_sample)
    for in_memory, on_disk in zip(embedded.splits(), files.splits()):
        order = np.argsort(on_disk.slice_numbers, kind="stable")
        from_files = np.concatenate([b[1].numpy() for b in make_dataset(on_disk, 128, 16, labels=True)])[order]
        from_memory = np.concatenate([b[1].numpy() for b in make_dataset(in_memory, 128, 16, labels=True)])
        np.testing.assert_array_equal(from_memory, from_files)


def test_a_set_without_labels_is_refused_labels_and_its_fingerprint_ignores_them(labelled_sample, sample_copy):
    for split in ("train", "validate", "test"):
        shutil.rmtree(sample_copy / f"keras_png_slices_seg_{split}")
    unlabelled = read_folder(sample_copy).test
    assert not unlabelled.has_labels
    with pytest.raises(ValueError, match="no tissue labels"):
        make_dataset(unlabelled, 64, 8, labels=True)
    labelled = read_folder(labelled_sample).test
    changed = dataclasses.replace(labelled, label_files=labelled.label_files[::-1])
    assert changed.fingerprint() == labelled.fingerprint()
    assert changed.fingerprint(with_labels=True) != labelled.fingerprint(with_labels=True)


def _remove(root):
    (root / "keras_png_slices_seg_test" / "seg_003_slice_5.nii.png").unlink()


def _add_extra(root):
    shutil.copy(root / "keras_png_slices_seg_test" / "seg_003_slice_5.nii.png",
                root / "keras_png_slices_seg_test" / "seg_009_slice_5.nii.png")


def _odd_value(root):
    path = root / "keras_png_slices_seg_test" / "seg_003_slice_5.nii.png"
    values = np.asarray(Image.open(path)).copy()
    values[128, 128] = 100
    Image.fromarray(values).save(path)


def _wrong_size(root):
    path = root / "keras_png_slices_seg_test" / "seg_003_slice_5.nii.png"
    Image.open(path).resize((128, 128), Image.NEAREST).save(path)


def _rgb(root):
    path = root / "keras_png_slices_seg_test" / "seg_003_slice_5.nii.png"
    Image.open(path).convert("RGB").save(path)


def _one_folder_gone(root):
    shutil.rmtree(root / "keras_png_slices_seg_validate")


def _not_an_image(root):
    (root / "keras_png_slices_seg_test" / "seg_003_slice_5.nii.png").write_bytes(b"<html>404</html>")


@pytest.mark.parametrize("damage, message", [
    (_remove, r"keras_png_slices_seg_test has no seg_003_slice_5.nii.png, the tissue labels of .*case_003_slice_5"),
    (_add_extra, r"seg_009_slice_5.nii.png labels no slice of .*keras_png_slices_test \(1 such files\)"),
    (_odd_value, r"seg_003_slice_5.nii.png holds the value 100, not one of the tissue values 0, 85, 170, 255"),
    (_wrong_size, r"seg_003_slice_5.nii.png is 128x128 but its slice is 256x256"),
    (_rgb, r"seg_003_slice_5.nii.png holds PNG RGB data, not the 8-bit grayscale PNG"),
    (_one_folder_gone, r"holds keras_png_slices_seg_train but not keras_png_slices_seg_validate"),
    (_not_an_image, r"seg_003_slice_5.nii.png is not a readable image"),
], ids=["missing", "extra", "value", "size", "rgb", "folder", "unreadable"])
def test_wrong_label_files_are_named_in_one_line(sample_copy, damage, message):
    damage(sample_copy)
    with pytest.raises(InputError, match=message) as error:
        read_folder(sample_copy)
    assert "\n" not in str(error.value)
