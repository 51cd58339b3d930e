"""The fleet's shared words, for the master and the nodes alike: node records and liveness, the batch
protocol, work pools and the one way to a Prefect client, the Prefect server launcher, background
services. The master's own services are :mod:`master`, the node's :mod:`agent`."""
