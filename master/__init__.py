"""What runs on the master: the stack (Prefect server with credentials, the campaign worker, TLS),
target discovery and the master's metrics, monitoring (the metrics store, vmalert, Alertmanager),
the RTMP ingest, submitting campaigns to deployments, and the demo. The node side is :mod:`agent`;
the words both share (node records, the batch protocol, pools, the Prefect client) are
:mod:`ffwatt.fleet`."""
