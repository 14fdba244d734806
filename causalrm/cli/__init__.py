"""The ``causalrm`` command line: one module per subcommand, dispatched by :mod:`causalrm.cli.main`."""
