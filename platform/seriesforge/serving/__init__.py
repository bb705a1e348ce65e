"""Serving trained generators over HTTP with Ray Serve (issue #8).

    config.py    ServeConfig: the `args` of the seriesforge application in a Serve config file (serve/config.yaml)
    api.py       request/response schemas, request checks and error bodies (no Ray, no torch)
    sampling.py  a batch of requests -> one `Generator.sample` call per (model, length, steps, guidance) group
    app.py       the deployments (FastAPI ingress, batched + multiplexed generator), `build_app`, `deploy`

Importing this package imports nothing heavy; `app` pulls in Ray Serve, and only generator replicas load torch.
"""
