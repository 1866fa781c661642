"""The engine: the scheduler that plans, the worker that runs attempts, and the executor that runs one command."""
