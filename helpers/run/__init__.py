"""Running the pipeline: the parameter table (`parameters`), a notebook run's checked config and the
training requests it builds (`config`), parameter files (`parameter_files`), the step outcome
(`outcome`), the steps the notebooks call (`steps`), the papermill DAG runner (`runner`, locked by
`lock`), its reports (`reports`), the files generated from the table (`generated`) and the command
line (`cli`)."""
