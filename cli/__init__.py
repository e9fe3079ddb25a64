"""The `chaser` command line: the server, API-key administration, and a client of the REST API."""
