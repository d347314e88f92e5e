"""pipeq's processes: the worker (the only one that touches models), beat, the gateway, the CLI."""
