"""cmh.data.sources: the inputs ``data.py prepare`` reads, and the generated demo.

    registry        data sources by name: the flags that name each input, and how it is read

    iapr_raw        the raw IAPR TC-12 annotations and SAIAPR labels, and their folder layout
    iapr_lists      the preprocessed iapr_train / iapr_test / iapr_retrieval lists
    mat_files       MATLAB .mat containers (v5 and v7.3), read the same way
    mat_sets        a benchmark set assembled from the circulated .mat files
    mat_prepare     the prepare step for .mat benchmark sets (prepare --mat)
    twemoji         Twemoji images + emojilib keywords (prepare --twemoji)
    demo_kinds      what the generated demo is made of: labels, objects, layouts, scenes
    demo_scenes     seeded sampling of demo scenes: objects, labels, caption
    demo_captions   IAPR-style captions of the demo scenes
    demo_generator  the generated demo dataset in the raw IAPR layout
"""
