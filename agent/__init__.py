"""What runs on a worker node: probing what works here, the agent (exporters, node_exporter, the
wake-up endpoint, its record in the registry) and the warm workers that run flow runs in-process
(the master's campaign worker is one too)."""
