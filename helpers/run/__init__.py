"""Running the pipeline: the parameter table and checked configs (`parameters`), the step outcome
(`outcome`), the steps the notebooks call (`steps`), the papermill DAG runner (`runner`), its
reports (`reports`) and the command line (`cli`)."""
