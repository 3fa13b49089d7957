"""The task engine: the Task interface, the registry, training / evaluation / loading, the data module, resume files."""
