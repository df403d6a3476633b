"""Everything that talks to MLflow, in modules that import only downward (no cycles):

``store``        which tracking store, the run's local directory, experiments (and their kind)
``transport``    one delivery attempt per call, fail-fast, for a database or an HTTP server
``outbox``       buffered, retried delivery of a run's logging, its final tags and its status
``system_metrics``  CPU, memory, disk, network (and GPU) samples through the outbox
``runs``         open (or continue) a run, and end it with an honest status through the outbox
``logger``       Lightning's MLFlowLogger bound to a run and the outbox
``checkpoints``  atomic checkpoint files; ``resume`` gathers what resuming a run needs
``datasets``     the data a run trained and was scored on, as MLflow dataset inputs
``models``       MLflow Models: logging, loading (any source) and the registry's champions
"""
