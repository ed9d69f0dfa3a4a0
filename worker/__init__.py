"""The `worker` process of the Procfile: `python -m worker` runs conversation steps from the queue."""
