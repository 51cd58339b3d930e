"""What tests and benches build their world from: hosts in network namespaces (a fleet on one
machine), synthetic powercap trees, a throwaway Prefect server, waiting for a service to answer.

It ships with the product (``pip install ffwatt`` has it) so that a bench can be run from an
installed copy, and nothing in the product imports it.
"""
