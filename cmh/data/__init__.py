"""cmh.data: a dataset prepared once, then read: the on-disk standard and its loaders.

    prepare          read an input, drop unusable items, split, write a prepared folder
    prepare_flags    data.py's command line (prepare, demo, relocate) and the demo dataset made once
    prepared_folder  a prepared folder read and checked (PreparedData, load_prepared)
    relocate         a prepared folder moved away from its images pointed at them again
    splits           the seeded split and the protocol checks every reader re-runs
    published_splits query / train sizes of the published protocols, label widths
    dataset          HashingDataset, collate, the seeded loader
    image_transforms image decoding and the training / evaluation transforms
    bag_of_words     the bag-of-words tokenizer, vocabulary and count vectors
    sources/         the inputs prepare reads: raw IAPR, lists, .mat, Twemoji, the demo generator
    caches/          image arrays, the uint8 cache, resident batches, frozen features
"""
