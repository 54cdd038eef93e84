"""Image sets on disk (`sets`), every path of the pipeline (`layout`), combine and split (`combine`),
tables describing sets (`describe`), reviewer corrections (`overrides`) and demo data (`demo`)."""
