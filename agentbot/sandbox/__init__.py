"""Code executors behind the `CodeExecutor` port: local subprocess (unsafe, development), none, Docker."""
