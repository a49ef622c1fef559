"""Pipeline wiring, configuration, runners and the ``emotion-ai`` command line."""
