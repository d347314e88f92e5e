"""pipeq's common library: what producers, workers, beat and the gateway all share.

Nothing under ``shared`` imports torch or transformers, so a producer that only
submits jobs installs and starts without them.
"""
