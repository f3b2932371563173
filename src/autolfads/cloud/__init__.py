"""Running AutoLFADS on Google Cloud with Ray's cluster launcher (DESIGN.md §6).

`gcp` knows GCP names (zones, machine types, GPUs), `cluster` writes and checks the cluster YAML,
`lifecycle` builds the exact `ray`/`gcloud` commands behind `autolfads cloud up|submit|status|
download|down`, `cost` estimates a run's price from the dated table in `prices.yaml`, and `cli`
is the `autolfads cloud` sub-command. Nothing here talks to the cloud except `lifecycle.execute`.
"""
