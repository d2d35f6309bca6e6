"""cmh: the machinery of cross-modal hashing that the root scripts share.

The root holds what the project is (``data.py``, ``models.py``, ``loss.py``) and its entry
points (``train.py``, ``evaluate.py``, ``retrieve.py``, ``data.py prepare|demo``). This package
holds the rest; its modules import each other and third-party libraries, never a root module.

Data on disk
    iapr_raw        the raw IAPR TC-12 annotations and SAIAPR labels, and their folder layout
    iapr_lists      the preprocessed iapr_train / iapr_test / iapr_retrieval lists
    bag_of_words    the bag-of-words tokenizer, vocabulary and count vectors
    twemoji         Twemoji images + emojilib keywords (prepare --twemoji)
    prepare_step    read an input, drop unusable items, split, write a prepared folder
    splits          the seeded split and the protocol checks every reader re-runs
    prepared        a prepared folder read and checked (PreparedData, load_prepared)
    demo_kinds, demo_scenes, demo_captions, demo_generator
                    the generated demo dataset: what it shows, sampling, captions, drawing
Data in memory
    images          image decoding and the training / evaluation transforms
    dataset         HashingDataset, collate, the seeded loader
    image_cache     the uint8 image cache and augmentation on the device
    frozen_features backbone features extracted once for frozen-backbone training
Training and evaluation
    training_loop   one epoch, validation, the epochs loop, RNG state (loss and model passed in)
    run_folder      train.log, metrics.jsonl, args.json and resuming a run folder
    argument_checks train.py's refusals of impossible flag combinations
    checkpoint_io   atomic, CRC-checked checkpoints loaded with weights_only=True
    torchrun        DDP helpers (rank, gather, all-reduce) for torchrun
    encoding        a model's ±1 codes of a split, and the metrics of encoded splits
    hamming_metrics mAP over Hamming ranking (both tie policies), chance level (pure numpy)
    retrieval_curves precision@N and PR over the Hamming radius (pure numpy)
Retrieval
    binary_index    FAISS binary indexes with evaluate.py's tie order, the index folder
    results_page    the printed table and the HTML page of retrieve.py
errors              UserError: the one exception whose message is for the user
"""
