"""`github.runner`: GitHub Actions workflow jobs on self-hosted runner labels."""
