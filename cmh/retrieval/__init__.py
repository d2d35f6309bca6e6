"""cmh.retrieval: hashing and searching collections (retrieve.py, and the Python API).

    hasher        Hasher: a checkpoint's model as a hash function (images, texts -> packed codes)
    binary_index  FAISS binary indexes (flat, HNSW, IVF, MIH), their parameters, evaluate.py's tie order
    index_folder  the index folder: items, codes, FAISS files, written a whole generation at a time
    collection    what an index holds: a prepared split, or a folder of images and a file of captions
    searching     Searcher: queries by text, image or item (retrieve.py query and the page)
    results_page  the printed table and the HTML page of retrieve.py query
    server        the live search page of retrieve.py serve (Flask, an optional requirement)

The Python API (Hasher, index_collection, add_to_index, load_index, Searcher): docs/retrieval.md.
"""

from cmh.retrieval.collection import add_to_index, index_collection
from cmh.retrieval.hasher import Hasher
from cmh.retrieval.index_folder import Index, load_index
from cmh.retrieval.searching import Searcher

__all__ = ["Hasher", "Index", "Searcher", "add_to_index", "index_collection", "load_index"]
