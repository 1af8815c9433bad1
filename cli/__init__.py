"""The ``lungai`` command line: click commands, thin over the library."""
