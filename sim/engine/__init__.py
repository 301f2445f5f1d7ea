"""Event timelines over costed ops: the training step (pipeline schedules, overlap) and the
serving engine (queues, batching, KV cache). Imports ``sim.cost``, ``hardware``, ``workloads``."""
