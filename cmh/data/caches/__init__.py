"""cmh.data.caches: data held once so that training does not redo it every step.

    image_array      images of a benchmark file stored as one raw uint8 array in the folder
    uint8_cache      the one-time uint8 image cache and augmentation on the batch's device
    resident_batches --resident-data: the training split held on the device
    frozen_features  backbone features extracted once for frozen-backbone training
"""
