"""cmh.retrieval: searching hash codes (retrieve.py).

    binary_index  FAISS binary indexes with evaluate.py's tie order, the index folder
    results_page  the printed table and the HTML page of retrieve.py query
"""
