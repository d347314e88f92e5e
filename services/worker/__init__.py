"""The worker: the only part of pipeq that touches models and devices.

Start-up order matters (``main.run``): pin the device, then import torch, load
the models of the worker's queues once, then consume jobs with a thread pool
(no fork after CUDA, ever).
"""
