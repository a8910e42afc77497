"""From `ImageSource` to stratified splits and batched `tf.data` pipelines of `uint8` images.

Images stay compact (`uint8`, native size) all the way to the model; batches are gathered by
shuffled index, so one epoch costs a few vectorised gathers rather than one op per image.

Example:
    >>> splits = load_splits(DataConfig(), seed=42)
    >>> ds = make_dataset(splits.train, batch_size=32, num_classes=10, shuffle=True, seed=42)
    >>> images, labels = next(iter(ds))
    >>> images.dtype.name, labels.shape
    ('uint8', TensorShape([32, 10]))
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Optional

import numpy as np

from kerastl.config import AugmentConfig, DataConfig, size_hw
from kerastl.data.images import pixel_hashes
from kerastl.data.similarity import first_of_each_group
from kerastl.data.pictures import aspect_differs, describe_changes
from kerastl.data.sources import ImageSource, ReadOptions, in_many_files, read_source
from kerastl.data.splitting import stratified_split
from kerastl.data.store import keep_only, on_disk
from kerastl.errors import DataError


@dataclass(frozen=True)
class Splits:
    """Train, validation and test sources sharing one class list; `train_targets`, when set, are soft
    targets [N, K] of the training images that training fits instead of their labels (distillation)."""

    train: ImageSource
    validation: Optional[ImageSource]
    test: Optional[ImageSource]
    train_targets: Optional[np.ndarray] = None
    shard: Optional[tuple[int, int]] = None  # (process, processes): this process read only its share of the files

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    def conversions(self) -> list[str]:
        """What reading did to the pixels of any split (a scale, a bit depth, an orientation), each sentence once."""
        parts = (self.train, self.validation, self.test)
        return list(dict.fromkeys(note for part in parts if part is not None for note in part.conversions))

    def held_out(self) -> tuple[str, Optional[ImageSource]]:
        """The split a run is judged on and its name: test, else validation (None when there is neither)."""
        return ("test", self.test) if self.test is not None else ("validation", self.validation)


def read_data_source(
    spec: str,
    data: DataConfig,
    image_size: Optional[int | tuple[int, int]],
    require_labels: bool = True,
    progress: bool = False,
    cache_dir: Optional[Path] = None,
    shard: Optional[tuple[int, int]] = None,
) -> ImageSource:
    """Read `spec` with the reading options of a `DataConfig` (`progress`: a bar on stderr for tables;
    with `data.cache: disk`, images go to raw files in `cache_dir`, see `kerastl.data.store`). Image folders are
    resized to `image_size` (the model's input) as they are read; tables keep their shape (the model resizes them),
    with a note when that shape's aspect ratio is not the input's (what `data.resize` will do to them). With `shard`
    (process, processes), a source in many files is read in this process's share of them."""
    source = read_source(spec, replace(read_options(data, image_size, require_labels, progress, cache_dir), shard=shard))
    if image_size is None or not len(source):
        return source
    target, (height, width) = size_hw(image_size), source.image_shape[:2]
    if (height, width) == target or not aspect_differs(height, width, target):
        return source
    return replace(source, conversions=(*source.conversions,
                                        *describe_changes({data.resize: len(source)}, len(source), source.origin)))


def read_options(
    data: DataConfig, image_size: Optional[int | tuple[int, int]], require_labels: bool = True, progress: bool = False,
    cache_dir: Optional[Path] = None,
) -> ReadOptions:
    """The `ReadOptions` a `DataConfig` sets: every option of the same name, the label separator only for
    multi-label data, `cache_dir` only with `data.cache: disk`."""
    shared = {option.name: getattr(data, option.name) for option in fields(ReadOptions) if hasattr(data, option.name)}
    return ReadOptions(**{
        **shared, "require_labels": require_labels, "image_size": image_size, "progress": progress,
        "label_separator": data.label_separator if data.multi_label else None,
        "cache_dir": cache_dir if data.cache == "disk" else None,
    })


def load_splits(
    data: DataConfig, seed: int, image_size: Optional[int | tuple[int, int]] = None, progress: bool = False,
    cache_dir: Optional[Path] = None, shard: Optional[tuple[int, int]] = None,
) -> Splits:
    """Read the configured sources and split them, stratified by class and seeded.

    Separate `data.validation` / `data.test` sources replace the corresponding fraction. With
    `data.cache: disk` and a `cache_dir`, every split is a memory-mapped file there (nothing else is kept). With
    `shard` (process, processes; multi-host training) a source in many files (a folder, a glob of table shards) is
    read in this process's share of its files and split on its own; a source in one file is read whole.

    Raises:
        DataError: unreadable data, a single class, or a class too small for the split.
    """
    shard = shard if shard is not None and in_many_files(data.source) else None  # one file: every process reads it
    source = read_data_source(data.source, data, image_size, progress=progress, cache_dir=cache_dir, shard=shard)
    source = source.select(data.classes, data.max_per_class, seed)
    if data.deduplicate == "exact":
        source = drop_exact_duplicates(source)
    elif data.deduplicate == "near":
        source = drop_near_duplicates(source)
    if len(source.class_names) < 2:
        raise DataError(f"{source.origin}: needs at least 2 classes to train a classifier, found {len(source.class_names)}.")
    held_out = {}
    fractions = {}
    for name in ("validation", "test"):
        spec = getattr(data, name)
        if spec:
            other = read_data_source(spec, data, image_size, progress=progress, cache_dir=cache_dir, shard=shard)
            if other.image_shape != source.image_shape:
                raise DataError(f"{other.origin}: images are {other.image_shape}, the training images {source.image_shape}.")
            held_out[name] = other.with_classes(source.class_names)
        elif getattr(data.split, name) > 0:
            fractions[name] = getattr(data.split, name)
    train, split_off = stratified_split(source, fractions, seed)
    held_out.update(split_off)
    splits = Splits(train, held_out.get("validation"), held_out.get("test"), shard=shard)
    if cache_dir is not None and data.cache == "disk":
        keep_only(cache_dir, [part.images for part in (splits.train, splits.validation, splits.test) if part is not None])
    return splits


def drop_exact_duplicates(source: ImageSource) -> ImageSource:
    """`source` with one image of each group of equal pixels (the first), and a note saying how many went
    (`data.deduplicate: exact`, before splitting, so no split holds a copy of another's image)."""
    _, first = np.unique(pixel_hashes(source.images), return_index=True)
    removed = len(source) - len(first)
    if not removed:
        return source
    kept = source.take(np.sort(first))
    note = f"data.deduplicate: exact removed {removed} of {len(source)} images of {source.origin} (equal pixels to an earlier image)."
    return replace(kept, conversions=(*kept.conversions, note))


def drop_near_duplicates(source: ImageSource) -> ImageSource:
    """`source` with one image of each group of exact or near duplicates (the first; `data.deduplicate: near`, before
    splitting; near: thumbnail similarity at `kerastl.data.similarity.dedup_threshold`), and a note."""
    keep, threshold = first_of_each_group(source.images)
    removed = len(source) - len(keep)
    if not removed:
        return source
    kept = source.take(keep)
    note = (f"data.deduplicate: near removed {removed} of {len(source)} images of {source.origin} (equal to an earlier "
            f"image, or its near copy: thumbnail similarity >= {threshold}).")
    return replace(kept, conversions=(*kept.conversions, note))


def label_targets(source: ImageSource, num_classes: int) -> np.ndarray:
    """The [N, K] targets `source`'s labels stand for, as `make_dataset` pairs them with the images: one-hot
    rows, or the multi-hot rows of a multi-label source as given.

    Example:
        >>> label_targets(from_arrays(np.zeros((2, 4, 4), "uint8"), [1, 0]), 2).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    return source.label_kind.targets(source.labels, num_classes)


def make_dataset(
    source: ImageSource,
    batch_size: int,
    num_classes: Optional[int] = None,
    shuffle: bool = False,
    seed: int = 0,
    augment: Optional[AugmentConfig] = None,
    drop_remainder: bool = False,
):
    """A `tf.data.Dataset` of `(uint8 images [B, H, W, C], one-hot float32 labels [B, K])` batches
    (multi-hot labels for multi-label sources), reshuffled on every pass with `shuffle`.

    Unlabelled sources give image batches only. GridMask/MixUp/CutMix (from `augment`) work on whole batches.
    `drop_remainder` leaves out each pass's last, smaller batch (distributed training splits every batch evenly
    among replicas). `epoch_dataset` is the recipe's: the epochs of a fit in a resumable seeded order.
    """
    import tensorflow as tf

    indices = tf.data.Dataset.range(len(source))
    if shuffle:
        indices = indices.shuffle(len(source), seed=seed, reshuffle_each_iteration=True)
    return _batches(source, indices.batch(batch_size, drop_remainder=drop_remainder), augment, seed, num_classes)


@dataclass(frozen=True)
class EpochOrder:
    """The order in which a fit draws training images: epochs `start` to `stop` back to back, each in an order
    that depends only on `seed` and its number (stateless `index_shuffle`), so a resumed run sees the same order
    as an uninterrupted one.

    With `copies=K` the source holds K versions of every image one after the other (e.g. features of K augmented
    copies) and epoch `e` draws from version `e % K`. With `balanced` each epoch draws as many images as the source
    holds, every draw a class picked uniformly and then one of its images (with replacement; `data.sampling:
    balanced`). With `steps`, each epoch is its first `steps` batches.

    Example:
        >>> epoch_dataset(splits.train, 32, EpochOrder(start=2, stop=5, seed=42))  # fit with steps_per_epoch
    """

    start: int
    stop: int
    seed: int = 0
    copies: int = 1
    balanced: bool = False
    steps: Optional[int] = None  # batches per epoch, when fewer than the source holds (processes with unequal shares)


def epoch_dataset(
    source: ImageSource,
    batch_size: int,
    order: EpochOrder,
    augment: Optional[AugmentConfig] = None,
    drop_remainder: bool = False,
    targets: Optional[np.ndarray] = None,
):
    """The batches of the epochs `order` names, as `make_dataset`'s; `targets` (float [N, K]) replace the one-hot
    labels as what the batches pair with the images (distillation's soft targets)."""
    import tensorflow as tf

    count = len(source) // order.copies
    draw = _balanced_draw(source.labels[:count]) if order.balanced else None

    @tf.autograph.experimental.do_not_convert  # no Python control flow on tensors: nothing for AutoGraph to convert
    def one_epoch(epoch):
        seeds = tf.stack([tf.constant(order.seed, tf.int64), epoch])
        if draw is None:
            indices = tf.random.experimental.index_shuffle(tf.range(count, dtype=tf.int64), seeds, max_index=count - 1)
        else:
            indices = draw(seeds)
        indices += (epoch % order.copies) * count
        batches = tf.data.Dataset.from_tensor_slices(indices).batch(batch_size, drop_remainder=drop_remainder)
        return batches if order.steps is None else batches.take(order.steps)

    indices = tf.data.Dataset.range(order.start, order.stop).flat_map(one_epoch)
    return _batches(source, indices, augment, order.seed, targets=targets, count=count)


def _batches(source: ImageSource, indices, augment, seed: int, num_classes=None, targets=None, count=None):
    """`(images, labels)` batches (images only, unlabelled) gathered by the index batches `indices`; the labels of
    index `i` are row `i % count` (`count` the number of distinct images when the source holds copies)."""
    import tensorflow as tf

    gather = image_gatherer(source.images)
    if source.labels is None:
        return streamed(indices.map(gather))
    count = count or len(source)
    depth = num_classes or len(source.class_names)
    labels = tf.constant(source.labels if targets is None else np.asarray(targets, np.float32))
    as_given = source.multi_label or targets is not None  # multi-hot labels or soft targets: already [N, K]

    @tf.autograph.experimental.do_not_convert
    def batch(idx):
        rows = tf.gather(labels, idx % count)
        return gather(idx), tf.cast(rows, tf.float32) if as_given else tf.one_hot(rows, depth)

    dataset = indices.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    augment_batch = batch_augmentation(augment, seed) if augment is not None else None
    if augment_batch is not None:
        dataset = dataset.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return streamed(dataset)


def streamed(dataset):
    """`dataset` prefetched, with tf.data's autotuning model off: every pipeline kerastl feeds a model ends here.

    The autotuning model runs in a thread of each iterator that wakes at a period doubling up to seconds, and
    deleting the iterator, at the end of every `fit` and `predict`, can wait for that thread's next wake-up: here the
    digits run's fine-tune `fit` returned 1.8-2.7 s after its last epoch in 8 of 36 runs (TensorFlow 2.21; a stack
    dump showed the deleted iterator waiting on that thread), and never with the model off (0 of 14). Without it,
    `num_parallel_calls=AUTOTUNE` stays at one call per core (at most 16), as tf.data documents, which is what these
    in-memory gathers need.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _balanced_draw(labels: np.ndarray):
    """`draw(seeds) -> indices [N]`: N stateless draws, each a class uniformly among the present ones, then
    one of its images uniformly."""
    import tensorflow as tf

    by_class = tf.constant(np.argsort(labels, kind="stable"), tf.int64)
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    sizes, starts = tf.constant(counts[present], tf.float64), tf.constant((np.cumsum(counts) - counts)[present], tf.int64)

    def draw(seeds):
        class_seeds, image_seeds = tf.unstack(tf.random.experimental.stateless_split(seeds, 2))
        picked = tf.random.stateless_uniform([len(labels)], class_seeds, 0, len(present), dtype=tf.int64)
        within = tf.random.stateless_uniform([len(labels)], image_seeds, dtype=tf.float64) * tf.gather(sizes, picked)
        return tf.gather(by_class, tf.gather(starts, picked) + tf.cast(within, tf.int64))

    return draw


def image_gatherer(images: np.ndarray):
    """`gather(indices) -> rows [B, ...]` (uint8 images or cached features) for a tf.data map: from one
    constant tensor for arrays in memory, or rows read from the memory-mapped file of a disk cache."""
    import tensorflow as tf

    if on_disk(images):

        def gather(idx):
            rows = tf.numpy_function(lambda i: np.asarray(images[i]), [idx], tf.as_dtype(images.dtype), stateful=False)
            return tf.ensure_shape(rows, [None, *images.shape[1:]])

    else:
        constant = tf.constant(images)

        def gather(idx):
            return tf.gather(constant, idx)

    return tf.autograph.experimental.do_not_convert(gather)  # plain TensorFlow ops: nothing for AutoGraph to convert


INFERENCE_IMAGES_PER_BATCH = 64  # at least; see inference_batch_size


def inference_batch_size(batch_size: int) -> int:
    """The batch a run predicts in (frozen features, held-out logits): the largest multiple of the training batch
    `batch_size` up to 64 images, and never less than `batch_size`. Prediction keeps no activations for a
    backward pass, so it fits where training does. On this 2-core CPU a MobileNetV2 feature extractor predicts
    1.4 times as many 32-px images per second in batches of 64 as of 32 (α 1.0: 2,106 against 1,522; α 0.35:
    3,355 against 2,393), and as many at 224 px (96 both); the digits run's frozen features took 2.62 s against
    3.08 s (medians of six fresh processes each). A multiple of the training batch splits evenly among replicas.

    Example:
        >>> inference_batch_size(32), inference_batch_size(48), inference_batch_size(128)
        (64, 48, 128)
    """
    return batch_size * max(1, INFERENCE_IMAGES_PER_BATCH // batch_size)


def image_batches(images: np.ndarray, batch_size: int):
    """A `tf.data.Dataset` of the images in order, the last batch filled up by repeating the last
    image, so every batch is whole (a distributed model gives each replica an equal share)."""
    import tensorflow as tf

    count, gather = len(images), image_gatherer(images)
    padded = -(-count // batch_size) * batch_size
    last_image = tf.autograph.experimental.do_not_convert(lambda idx: tf.minimum(idx, count - 1))
    indices = tf.data.Dataset.range(padded).batch(batch_size).map(last_image)
    return streamed(indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))


def predict_images(model, images: np.ndarray, batch_size: int, verbose: int | str = 0) -> np.ndarray:
    """`model.predict` on every row of `images` in whole batches of `inference_batch_size(batch_size)`
    (`predict_in_batches`): every prediction a run makes through one model has one batch shape, so Keras traces it once."""
    return predict_in_batches(model, images, inference_batch_size(batch_size), verbose)


def predict_in_batches(model, images: np.ndarray, batch_size: Optional[int] = None, verbose: int | str = 0) -> np.ndarray:
    """`model.predict` on every row of `images`, streamed in whole batches of `batch_size` (`image_batches`, so
    without tf.data's autotuning model, see `streamed`; a NumPy array given to `predict` gets Keras' own pipeline,
    with it), with Keras' progress bar at `verbose`. `batch_size` None: `INFERENCE_IMAGES_PER_BATCH`, or all the
    images when there are fewer (one image is not padded to a batch of 64).

    Example:
        >>> probabilities = predict_in_batches(model, images, batch_size=32)   # [N, K]
    """
    batch_size = batch_size or max(1, min(INFERENCE_IMAGES_PER_BATCH, len(images)))
    return model.predict(image_batches(images, batch_size), verbose=verbose)[: len(images)]


def batch_augmentation(augment: AugmentConfig, seed: int):
    """A batch function applying keras-cv's GridMask, then Keras' MixUp and/or CutMix; None when all are off.

    Augmented images are rounded back to `uint8`, so the model input stays the same dtype. GridMask
    is keras-cv's (Keras 3 has none); it runs here, in tf.data, where keras-cv layers work.
    """
    import keras
    import tensorflow as tf

    layers = []
    if augment.gridmask > 0:
        import keras_cv

        layers.append(keras_cv.layers.GridMask(ratio_factor=(0.0, augment.gridmask), fill_mode="constant", seed=seed))
    if augment.mixup > 0:
        layers.append(keras.layers.MixUp(alpha=augment.mixup, seed=seed))
    if augment.cutmix > 0:
        layers.append(keras.layers.CutMix(factor=augment.cutmix, seed=seed))
    if not layers:
        return None

    def augment_batch(images, labels):
        batch = {"images": tf.cast(images, "float32"), "labels": labels}
        for layer in layers:
            batch = layer(batch)
        augmented = tf.cast(tf.round(tf.clip_by_value(batch["images"], 0, 255)), tf.uint8)
        return augmented, batch["labels"]

    return augment_batch
