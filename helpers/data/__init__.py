"""Image sets on disk (`sets`), every path of the pipeline (`layout`), combine and split
(`combine_split`), tables describing sets (`describe`), reviewer corrections (`overrides`), the
hidden truth of demo data (`truth`) and demo data (`demo`)."""
