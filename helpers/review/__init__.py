"""Interactive review: the logic (`logic`: sort, filter, page, sample), features, similarity and
embeddings (`features`) and the ipywidgets that only call them (`widgets`)."""
