"""A run's result: the data model, run-length masks, the JSON schema, the writer, exports."""
