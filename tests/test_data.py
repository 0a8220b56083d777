import dataclasses
import gzip
import hashlib
import io
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import write_slices
from keras_vqvae import InputError, load_slices, make_dataset, pixel_variance, read_folder
from keras_vqvae.data import __main__ as data_command
from keras_vqvae.data import SliceSet, manifest, synthetic


@pytest.fixture()
def oasis_folder(tmp_path, subject_slices):
    for split, cases in (("train", [1, 2, 3]), ("validate", [4]), ("test", [5])):
        write_slices(tmp_path / f"keras_png_slices_{split}", subject_slices[:4], cases)
    return tmp_path


def test_oasis_layout_gives_three_splits_with_case_ids_and_slice_numbers(oasis_folder):
    data = read_folder(oasis_folder)
    assert [len(s) for s in data.splits()] == [12, 4, 4]
    assert data.train.case_ids[:4] == ("001",) * 4 and sorted(data.train.slice_numbers[:4]) == [0, 1, 2, 3]
    assert data.notes == () and not any(split.has_labels for split in data.splits())  # no segmentation folders
    assert data.carry_positions and data.num_positions == 4
    unnamed = dataclasses.replace(data.test, slice_numbers=(-1,) + data.test.slice_numbers[1:])  # one name without
    assert not dataclasses.replace(data, test=unnamed).carry_positions


def test_pipeline_range_shapes_and_variance(oasis_folder, subject_slices):
    data = read_folder(oasis_folder)
    dataset = make_dataset(data.train, image_size=32, batch_size=5, training=True, seed=3)
    batches = [b.numpy() for b in dataset]
    assert [b.shape for b in batches] == [(5, 32, 32, 1), (5, 32, 32, 1), (2, 32, 32, 1)]
    values = np.concatenate(batches)
    assert values.dtype == np.float32 and values.min() == -0.5 and 0.3 < values.max() <= 0.5
    np.testing.assert_allclose(pixel_variance(dataset), values.var(), rtol=1e-4)
    again = np.concatenate([b.numpy() for b in make_dataset(data.train, 32, 5, training=True, seed=3)])
    np.testing.assert_array_equal(values, again)  # a seed makes the shuffle order reproducible


def test_evaluation_pipeline_keeps_file_order(oasis_folder, subject_slices):
    data = read_folder(oasis_folder)
    first = next(iter(make_dataset(data.test, image_size=64, batch_size=4))).numpy()
    expected = subject_slices[[0, 1, 2, 3]] / 255.0 - 0.5  # case_005_slice_0..3, sorted by name
    np.testing.assert_allclose(first[..., 0], expected, atol=1e-6)


def test_plain_folder_is_split_by_subject_deterministically(tmp_path, subject_slices):
    write_slices(tmp_path, subject_slices[:2], range(1, 21))
    first, second = read_folder(tmp_path, seed=7), read_folder(tmp_path, seed=7)
    subjects = [set(s.case_ids) for s in first.splits()]
    assert [len(s) for s in subjects] == [16, 2, 2]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert [s.case_ids for s in first.splits()] == [s.case_ids for s in second.splits()]
    assert [set(s.case_ids) for s in read_folder(tmp_path, seed=8).splits()] != subjects


def test_names_without_subject_ids_are_split_image_by_image_with_a_note(tmp_path, subject_slices):
    write_slices(tmp_path, subject_slices, [0], "brain{slice}.png")
    data = read_folder(tmp_path)
    assert sum(len(s) for s in data.splits()) == 8
    assert any("no subject id" in note for note in data.notes)


def test_odd_images_are_converted_with_notes(tmp_path, subject_slices):
    image = subject_slices[3]
    Image.fromarray(image).save(tmp_path / "case_1_slice_0.png")
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "case_2_slice_0.png")  # 16-bit
    Image.fromarray(np.stack([image] * 3 + [np.full_like(image, 255)], -1)).save(tmp_path / "case_3_slice_0.png")
    Image.fromarray(np.pad(image, ((0, 0), (8, 8)))).save(tmp_path / "case_4_slice_0.png")  # 64x80
    (tmp_path / "notes.txt").write_text("not an image")
    data = read_folder(tmp_path)
    joined = " | ".join(data.notes)
    for expected in ("grayscale (1 RGBA)", "16-bit", "non-square", "ignored 1 files", "notes.txt"):
        assert expected in joined
    sets = {c: s for s in data.splits() for c in s.case_ids}
    decoded = {c: next(iter(make_dataset(sets[c], 64, 1).skip(sets[c].case_ids.index(c)))).numpy()
               for c in ("1", "2", "3")}
    np.testing.assert_allclose(decoded["2"], decoded["1"], atol=1e-6)  # 16-bit scaled like 8-bit
    np.testing.assert_allclose(decoded["3"], decoded["1"], atol=1 / 255)  # RGBA to grey


@pytest.mark.parametrize("make_bad, message", [
    (lambda root: root / "nowhere", "does not exist"),
    (lambda root: (root / "file.png").write_bytes(b"x") and root / "file.png", "is a file, not a folder"),
    (lambda root: root, "it is empty"),
    (lambda root: (root / "a.txt").write_text("hi") and root, "found only 1 other files, e.g. a.txt"),
])
def test_missing_or_empty_folders_are_named(tmp_path, make_bad, message):
    with pytest.raises(InputError, match=message):
        read_folder(make_bad(tmp_path))


@pytest.mark.parametrize("damage", [lambda data: data[:200], lambda data: b"<html>404 Not Found</html>"],
                         ids=["truncated", "not-an-image"])
def test_an_unreadable_png_is_named(tmp_path, subject_slices, damage):
    write_slices(tmp_path, subject_slices[:2], [1, 2, 3])
    victim = tmp_path / "case_002_slice_1.nii.png"
    victim.write_bytes(damage(victim.read_bytes()))
    with pytest.raises(InputError, match=r"case_002_slice_1\.nii\.png is not a readable image.*copy it again"):
        read_folder(tmp_path)


def test_a_truncated_jpeg_is_named_before_any_work(tmp_path, subject_slices):
    for case in (1, 2, 3):
        for number, pixels in enumerate(subject_slices[:2]):
            Image.fromarray(pixels).save(tmp_path / f"case_{case:03d}_slice_{number}.jpg", quality=90)
    victim = tmp_path / "case_002_slice_1.jpg"
    victim.write_bytes(victim.read_bytes()[:-400])  # cut short: its header and first scan lines still read
    with pytest.raises(InputError, match=r"case_002_slice_1\.jpg is not a readable image.*copy it again"):
        read_folder(tmp_path)


def _saved(image: Image.Image, image_format: str, **options) -> bytes:
    data = io.BytesIO()
    image.save(data, image_format, **options)
    return data.getvalue()


# Images Pillow reads, as (format, mode, bytes): every format Pillow writes that a folder of slices might hold.
IMAGES = [(image_format, mode, lambda image, f=image_format, m=mode: _saved(image.convert(m), f))
          for image_format, modes in (("PNG", ("1", "L", "LA", "P", "RGB", "RGBA")), ("JPEG", ("L", "RGB", "CMYK")),
                                      ("GIF", ("L", "P")), ("BMP", ("L", "RGB")), ("TIFF", ("L", "RGB")),
                                      ("WEBP", ("RGB",)))
          for mode in modes]


@pytest.mark.parametrize("image_format, mode, encode", IMAGES, ids=[f"{f}-{m}" for f, m, _ in IMAGES])
def test_the_scan_accepts_exactly_the_images_the_pipeline_decodes(tmp_path, subject_slices, image_format, mode,
                                                                   encode):
    write_slices(tmp_path, subject_slices[:1], [1, 2, 3])
    (tmp_path / "case_002_slice_0.nii.png").write_bytes(encode(Image.fromarray(subject_slices[0])))  # named .png
    try:
        data = read_folder(tmp_path)
    except InputError as error:
        accepted = False
        assert str(error).startswith(f"{tmp_path / 'case_002_slice_0.nii.png'} holds {image_format}")
        assert str(error).endswith("which the pipeline cannot decode (it reads PNG, and grayscale or RGB JPEG): save "
                                   "it as a PNG, or delete it")
    else:
        accepted = True
        for split in data.splits():
            list(make_dataset(split, 32, 1))
    try:
        tf.io.decode_image(tf.io.read_file(str(tmp_path / "case_002_slice_0.nii.png")), channels=1,
                           expand_animations=False)
        decodable = True
    except tf.errors.InvalidArgumentError:
        decodable = False
    assert accepted == decodable


def test_blank_slices_are_refused_by_their_variance(tmp_path, subject_slices):
    write_slices(tmp_path, np.zeros_like(subject_slices[:2]), [1, 2, 3])
    with pytest.raises(InputError, match=r"every pixel of the training slices has the same value \(they are blank\)"):
        pixel_variance(make_dataset(read_folder(tmp_path).train, 32, 2))


@pytest.mark.parametrize("cache, message", [
    ("{tmp}/nowhere/cache_", "--cache folder {tmp}/nowhere does not exist: create it, or give --cache memory or none"),
    ("{tmp}/a_file/cache_", "{tmp}/a_file is a file, not a folder"),
])
def test_a_disk_cache_whose_folder_cannot_take_it_is_named(oasis_folder, tmp_path, cache, message):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(InputError, match=re.escape(message.format(tmp=tmp_path))):
        make_dataset(load_slices(oasis_folder).train, 32, 4, cache=cache.format(tmp=tmp_path))


def test_a_symbolic_link_loop_is_no_missing_folder(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InputError, match="loop is a symbolic link that leads back to itself"):
        read_folder(tmp_path / "loop")


def test_a_partial_oasis_layout_names_the_missing_folder(oasis_folder):
    for file in (oasis_folder / "keras_png_slices_test").iterdir():
        file.unlink()
    (oasis_folder / "keras_png_slices_test").rmdir()
    with pytest.raises(InputError, match="lacks keras_png_slices_test"):
        read_folder(oasis_folder)


def test_too_few_subjects_to_split(tmp_path, subject_slices):
    write_slices(tmp_path, subject_slices[:3], [1, 2])
    with pytest.raises(InputError, match="holds 2 subject"):
        read_folder(tmp_path)


def test_synthetic_subjects_are_deterministic_and_look_like_oasis_slices():
    first = synthetic.make_subject(7, seed=1, num_slices=4, image_size=128)
    assert synthetic.make_subject(7, seed=1, num_slices=4, image_size=128) is first  # kept, and handed out read-only
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0, 0] = 1
    synthetic._subject.cache_clear()
    np.testing.assert_array_equal(first, synthetic.make_subject(7, seed=1, num_slices=4, image_size=128))  # made again
    assert not np.array_equal(first, synthetic.make_subject(8, seed=1, num_slices=4, image_size=128))
    assert first.dtype == np.uint8 and first.shape == (4, 128, 128)
    assert np.all(first[:, :4, :] == 0) and np.all(first[:, :, :4] == 0)  # black background around the brain
    brain_fraction = (first > 0).mean(axis=(1, 2))
    assert np.all(brain_fraction > 0.15) and np.all(brain_fraction < 0.5)


def test_embedded_data_is_subject_disjoint_and_announced():
    data = load_slices(None, synthetic_subjects=synthetic.SubjectSplit(2, 1, 1))
    assert [len(s) for s in data.splits()] == [64, 32, 32]
    assert [sorted(set(s.case_ids)) for s in data.splits()] == [["001", "002"], ["003"], ["004"]]
    assert "synthetic" in data.description and any("not OASIS" in note for note in data.notes)


def test_make_sample_writes_the_oasis_layout_and_never_overwrites(tmp_path, capsys):
    assert data_command.main(["make-sample", str(tmp_path), "--subjects", "1,1,1", "--seed", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "keras_png_slices_validate").iterdir())
    assert len(names) == 32 and names[0] == "case_002_slice_0.nii.png"
    with Image.open(tmp_path / "keras_png_slices_test" / names[0].replace("002", "003")) as image:
        assert image.mode == "L" and image.size == (256, 256)
    assert "not OASIS" in (tmp_path / "README.txt").read_text() and "Louis Collins" in capsys.readouterr().out
    assert data_command.main(["make-sample", str(tmp_path), "--subjects", "1,1,1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [len(read_folder(tmp_path).train)] == [32]


@pytest.mark.parametrize("seed", ["-1", "2147483648", "two"])
def test_make_sample_refuses_a_bad_seed_in_one_line_before_writing(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as exit_:
        data_command.main(["make-sample", str(tmp_path / "new"), "--seed", seed])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--seed" in error and "whole number between 0 and 2147483647" in error
    assert not (tmp_path / "new").exists()


def test_verify_reports_missing_extra_wrong_size_and_wrong_hash(tmp_path, subject_slices):
    folder = write_slices(tmp_path / "keras_png_slices_test", subject_slices[:4], [441])
    files = sorted(folder.iterdir())
    rows = ["split_dir,filename,size_bytes,sha256"]
    for file in files:
        data = file.read_bytes()
        rows.append(f"keras_png_slices_test,{file.name},{len(data)},{hashlib.sha256(data).hexdigest()}")
    rows.append("keras_png_slices_test,case_441_slice_31.nii.png,100,00")
    rows.append("keras_png_slices_seg_test,seg_441_slice_0.nii.png,100,00")
    (tmp_path / "manifest.csv.gz").write_bytes(gzip.compress("\n".join(rows).encode()))
    expected = manifest.read_manifest(tmp_path / "manifest.csv.gz")

    segmentation, report = manifest.verify_copy(tmp_path, expected)  # sorted by folder name
    assert report.describe().startswith("keras_png_slices_test: 4/5 files, 1 missing, 0 extra, 0 wrong size, 0 wrong "
                                        "hash: PROBLEMS\n  missing: case_441_slice_31.nii.png")
    assert segmentation.describe() == "keras_png_slices_seg_test: absent (segmentations, not needed for training)"

    files[0].write_bytes(files[0].read_bytes()[:-1])  # truncated: wrong size
    data = bytearray(files[1].read_bytes())
    data[100] ^= 0xFF
    files[1].write_bytes(bytes(data))  # same size, corrupt: wrong hash
    (folder / "stray.png").write_bytes(b"x")
    report = manifest.verify_copy(tmp_path, expected)[1]
    assert (report.wrong_size, report.wrong_hash, report.extra, report.missing) == (
        [files[0].name], [files[1].name], ["stray.png"], ["case_441_slice_31.nii.png"])


def test_verify_command_checks_against_the_shipped_manifest(tmp_path, capsys, subject_slices):
    write_slices(tmp_path / "keras_png_slices_test", subject_slices[:2], [441])  # right names, other content
    assert data_command.main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "keras_png_slices_test: 2/544 files, 542 missing, 0 extra, 2 wrong size, 0 wrong hash: PROBLEMS" in out
    assert "keras_png_slices_train: absent (needed for training)" in out
    assert out.rstrip().endswith("the copy differs from the manifest: see the lines above")


def test_verify_of_a_folder_without_oasis_folders_is_an_input_error(tmp_path, capsys):
    assert data_command.main(["verify", str(tmp_path)]) == 2
    assert "holds none of the OASIS folders" in capsys.readouterr().err


def test_a_disk_cache_is_written_once_and_gives_the_same_batches(oasis_folder, tmp_path):
    slices = load_slices(oasis_folder)
    (tmp_path / "cache").mkdir()
    prefix = str(tmp_path / "cache" / "cache_")
    first = np.concatenate([b.numpy() for b in make_dataset(slices.validate, 32, 4, cache=prefix)])
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert files and all(name.startswith("cache_validate_32px") for name in files)
    again = np.concatenate([b.numpy() for b in make_dataset(slices.validate, 32, 4, cache=prefix)])
    uncached = np.concatenate([b.numpy() for b in make_dataset(slices.validate, 32, 4, cache="none")])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, uncached)


def test_training_order_is_the_same_for_the_same_seed(oasis_folder):
    slices = load_slices(oasis_folder)
    orders = [np.concatenate([b.numpy() for b in make_dataset(slices.train, 32, 4, training=True, seed=3)])
              for _ in range(2)]
    np.testing.assert_array_equal(*orders)


def test_pipelines_shard_by_element_between_workers(oasis_folder):
    import tensorflow as tf

    from keras_vqvae import make_code_dataset

    data = make_dataset(load_slices(oasis_folder).train, 32, 4, training=True, seed=0)
    codes = make_code_dataset(np.zeros((8, 4, 4), np.int32), 4, training=True, seed=0)
    for dataset in (data, codes):
        assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def constant_slices(name: str, subjects: int, slices_per_subject: int) -> SliceSet:
    """A split of `subjects` subjects whose slices (8x8) are all of one grey level: subject s's is s + 1."""
    case_ids = [f"{case:03d}" for case in range(1, subjects + 1) for _ in range(slices_per_subject)]
    pixels = np.repeat(np.arange(1, subjects + 1, dtype=np.uint8), slices_per_subject)[:, None, None]
    return SliceSet(name, tuple(case_ids), tuple(range(slices_per_subject)) * subjects,
                    pixels=np.broadcast_to(pixels, (len(case_ids), 8, 8)).copy())


def test_the_batches_of_one_epoch_mix_subjects_from_the_whole_split():
    # OASIS-sized: 9,600 slices in name order, subject by subject, more than a shuffle buffer holds
    train = constant_slices("train", 200, 48)
    batches = iter(make_dataset(train, 8, 8, training=True, seed=0, cache="none"))
    first = np.concatenate([next(batches).numpy() for _ in range(20)])  # the first 160 slices of the epoch
    subjects = np.unique(np.round((first[:, 0, 0, 0] + 0.5) * 255).astype(int))
    assert subjects.size > 100 and subjects.max() > 180  # drawn from the whole split, the last subjects included
    again = make_dataset(train, 8, 8, training=True, seed=0, cache="none").take(20)
    again = np.concatenate([b.numpy() for b in again])
    np.testing.assert_array_equal(first, again)  # deterministically by the seed


def test_a_disk_cache_is_rebuilt_for_other_slices_never_reused(tmp_path, subject_slices):
    # one --cache prefix, two data folders: the second run must see its own slices, not the first run's
    write_slices(tmp_path / "first", subject_slices[:4], [1, 2, 3])
    write_slices(tmp_path / "second", subject_slices[4:8], [1, 2, 3])
    (tmp_path / "cache").mkdir()
    prefix = str(tmp_path / "cache" / "cache_")

    def batches(folder, cache):
        return np.concatenate([b.numpy() for b in make_dataset(read_folder(folder).train, 32, 4, cache=cache)])

    first = batches(tmp_path / "first", prefix)
    second = batches(tmp_path / "second", prefix)
    np.testing.assert_array_equal(second, batches(tmp_path / "second", "none"))
    assert not np.array_equal(first, second)
    changed = tmp_path / "second" / "case_001_slice_0.nii.png"
    Image.fromarray(subject_slices[0]).save(changed)  # the same name, new content
    np.testing.assert_array_equal(batches(tmp_path / "second", prefix), batches(tmp_path / "second", "none"))


def test_a_disk_cache_cut_short_by_a_kill_is_neither_read_nor_in_the_way(oasis_folder, tmp_path):
    slices = load_slices(oasis_folder)
    (tmp_path / "cache").mkdir()
    prefix = str(tmp_path / "cache" / "cache_")
    make_dataset(slices.validate, 32, 4, cache=prefix)
    whole = sorted((tmp_path / "cache").iterdir())
    name = whole[0].name.split(".")[0]
    for file in whole:  # what a run killed while writing the cache of other slices leaves: a lock and part of the data
        file.unlink()
    dead = 2**22 + 12345  # above any process id this machine hands out
    for suffix in (".lockfile", ".data-00000-of-00001", "_0.lockfile"):
        (tmp_path / "cache" / f"{name}.partial-{dead}-0a1b2c3d{suffix}").write_bytes(b"cut short")
    cached = np.concatenate([b.numpy() for b in make_dataset(slices.validate, 32, 4, cache=prefix)])
    np.testing.assert_array_equal(cached, np.concatenate([b.numpy() for b in make_dataset(slices.validate, 32, 4,
                                                                                          cache="none")]))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [p.name for p in whole]
